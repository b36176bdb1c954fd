terraform {
  required_version = ">= 1.5.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

# Credentials come from the environment the driver sets (ARM_CLIENT_ID,
# ARM_CLIENT_SECRET, ARM_TENANT_ID), never from variables or state.
provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}
