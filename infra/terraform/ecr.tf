# One repository per image of containers/ (cpu, train, serve); tags are commits, immutable.
resource "aws_ecr_repository" "this" {
  for_each             = toset(["cpu", "train", "serve"])
  name                 = "${var.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
  }
}
