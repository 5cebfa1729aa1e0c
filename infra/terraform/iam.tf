# IAM roles for service accounts (IRSA): pods of a named Kubernetes service account assume a
# role through the cluster's OIDC provider; no AWS keys in Secrets or images.
resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.main.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
}

locals {
  oidc_host = replace(aws_iam_openid_connect_provider.eks.url, "https://", "")
  # role -> (service account subjects, buckets it may write). The pipeline's account exists in
  # the KFP namespace (pipeline runs) and in the unireward namespace (Trainer TrainJobs).
  irsa = {
    mlflow = {
      subjects = ["system:serviceaccount:${var.namespace}:unireward-mlflow"]
      buckets  = ["artifacts"]
    }
    pipeline = {
      subjects = [
        "system:serviceaccount:${var.pipeline_namespace}:unireward-pipeline",
        "system:serviceaccount:${var.namespace}:unireward-pipeline",
      ]
      buckets = ["data", "artifacts"]
    }
  }
}

data "aws_iam_policy_document" "irsa_assume" {
  for_each = local.irsa
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = each.value.subjects
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  for_each           = local.irsa
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume[each.key].json
}

data "aws_iam_policy_document" "irsa_s3" {
  for_each = local.irsa
  statement {
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for b in each.value.buckets : aws_s3_bucket.this[b].arn]
  }
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [for b in each.value.buckets : "${aws_s3_bucket.this[b].arn}/*"]
  }
}

resource "aws_iam_role_policy" "irsa_s3" {
  for_each = local.irsa
  name     = "s3"
  role     = aws_iam_role.irsa[each.key].id
  policy   = data.aws_iam_policy_document.irsa_s3[each.key].json
}
