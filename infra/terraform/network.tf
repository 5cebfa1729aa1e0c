data "aws_availability_zones" "available" {
  state = "available"
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags = {
    Name = var.name
  }
}

# Private subnets only: nodes reach AWS APIs and registries through the VPC's egress of choice
# (NAT or endpoints), which each organisation provides differently.
resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone = data.aws_availability_zones.available.names[count.index]
  tags = {
    Name                              = "${var.name}-private-${count.index}"
    "kubernetes.io/role/internal-elb" = "1"
  }
}

# The default security group of the VPC allows nothing (CIS 5.4).
resource "aws_default_security_group" "main" {
  vpc_id = aws_vpc.main.id
}
