variable "tenant_slug" {
  type        = string
  description = "The tenant's slug (a DNS label); every name derives from it."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])$", var.tenant_slug))
    error_message = "The tenant_slug must be a DNS label of 3-63 characters."
  }
}

variable "tenant_id" {
  type        = string
  description = "The tenant's id in MATIH, recorded as a tag."
  default     = ""
}

variable "location" {
  type        = string
  description = "The Azure region (the tenant's region)."
}

variable "subscription_id" {
  type        = string
  description = "The subscription the dedicated cluster is created in."
}

variable "kubernetes_version" {
  type        = string
  description = "AKS Kubernetes version; null takes the region's default."
  default     = null
}

variable "node_count" {
  type        = number
  description = "Nodes in the system pool."
  default     = 3

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100
    error_message = "The node_count must be between 1 and 100."
  }
}

variable "node_vm_size" {
  type        = string
  description = "VM size of the system pool."
  default     = "Standard_D4s_v5"
}

variable "vnet_cidr" {
  type        = string
  description = "Address space of the tenant's virtual network."
  default     = "10.240.0.0/16"
}

variable "subnet_cidr" {
  type        = string
  description = "Address range of the AKS node subnet (inside vnet_cidr)."
  default     = "10.240.0.0/20"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource."
  default     = {}
}
