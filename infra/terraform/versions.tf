# AWS stack of the production plane: VPC, EKS cluster with a GPU node group that scales from
# zero, S3 buckets (data, artifacts), ECR repositories and IRSA roles.
#
#   cd infra/terraform && terraform init && terraform apply -var region=us-east-1
#   make infra-check      # fmt -check + validate, offline (the provider comes from a local mirror)
#
# tests/prod/test_infra_terraform.py applies and destroys it against moto_server.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "unireward"
    }
  }
}
