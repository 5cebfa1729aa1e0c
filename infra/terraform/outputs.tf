# `make infra-aws-env` turns these into infra/overlays/aws/cluster.env.
output "cluster_name" {
  value = aws_eks_cluster.main.name
}

output "data_bucket" {
  value = aws_s3_bucket.this["data"].bucket
}

output "artifacts_bucket" {
  value = aws_s3_bucket.this["artifacts"].bucket
}

output "ecr_repositories" {
  value = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "mlflow_role_arn" {
  value = aws_iam_role.irsa["mlflow"].arn
}

output "pipeline_role_arn" {
  value = aws_iam_role.irsa["pipeline"].arn
}

output "gpu_node_group" {
  value = aws_eks_node_group.gpu.node_group_name
}
