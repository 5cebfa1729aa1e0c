variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource name (cluster, buckets, roles)."
  type        = string
  default     = "unireward"
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
  default     = "1.33"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two private subnets are carved from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "gpu_instance_types" {
  description = "GPU instance types of the node group (one NVIDIA GPU or more each)."
  type        = list(string)
  default     = ["g6e.2xlarge"]
}

variable "gpu_max_nodes" {
  description = "Upper bound of the GPU node group; it scales from zero (cluster autoscaler or Karpenter)."
  type        = number
  default     = 4
}

variable "cpu_instance_types" {
  description = "Instance types of the system node group (MLflow, pipeline CPU stages)."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "namespace" {
  description = "Kubernetes namespace of the unireward workloads (infra/base)."
  type        = string
  default     = "unireward"
}

variable "pipeline_namespace" {
  description = "Namespace where Kubeflow Pipelines runs the pipeline pods (a profile namespace in multi-user mode)."
  type        = string
  default     = "kubeflow"
}
