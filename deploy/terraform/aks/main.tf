locals {
  name = "matih-${var.tenant_slug}"
  # Storage account names: 3-24 lowercase letters and digits, globally unique.
  storage_account_name = substr("st${substr(sha1(var.tenant_slug), 0, 8)}${replace(var.tenant_slug, "-", "")}", 0, 24)
  tags = merge(var.tags, {
    "managed-by"      = "matih"
    "matih-tenant"    = var.tenant_slug
    "matih-tenant-id" = var.tenant_id
  })
}

resource "azurerm_resource_group" "tenant" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "tenant" {
  name                = "vnet-${local.name}"
  location            = azurerm_resource_group.tenant.location
  resource_group_name = azurerm_resource_group.tenant.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "nodes" {
  name                 = "snet-aks-nodes"
  resource_group_name  = azurerm_resource_group.tenant.name
  virtual_network_name = azurerm_virtual_network.tenant.name
  address_prefixes     = [var.subnet_cidr]
  service_endpoints    = ["Microsoft.Storage"]
}

resource "azurerm_kubernetes_cluster" "tenant" {
  name                = "aks-${var.tenant_slug}"
  location            = azurerm_resource_group.tenant.location
  resource_group_name = azurerm_resource_group.tenant.name
  dns_prefix          = local.name
  kubernetes_version  = var.kubernetes_version
  node_resource_group = "rg-${local.name}-nodes"

  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  role_based_access_control_enabled = true

  default_node_pool {
    name                         = "system"
    vm_size                      = var.node_vm_size
    node_count                   = var.node_count
    vnet_subnet_id               = azurerm_subnet.nodes.id
    only_critical_addons_enabled = false
    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin    = "azure"
    network_policy    = "calico"
    load_balancer_sku = "standard"
    service_cidr      = "10.0.0.0/16"
    dns_service_ip    = "10.0.0.10"
  }

  tags = local.tags
}

# The tenant ingress controller's LoadBalancer takes this address (the DNS A
# records point at it); the cluster's identity may attach it.
resource "azurerm_public_ip" "ingress" {
  name                = "pip-${local.name}-ingress"
  location            = azurerm_resource_group.tenant.location
  resource_group_name = azurerm_resource_group.tenant.name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_role_assignment" "cluster_network" {
  scope                = azurerm_resource_group.tenant.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_kubernetes_cluster.tenant.identity[0].principal_id
}

resource "azurerm_storage_account" "tenant" {
  name                            = local.storage_account_name
  resource_group_name             = azurerm_resource_group.tenant.name
  location                        = azurerm_resource_group.tenant.location
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  tags                            = local.tags

  network_rules {
    default_action             = "Deny"
    virtual_network_subnet_ids = [azurerm_subnet.nodes.id]
    bypass                     = ["AzureServices"]
  }
}

resource "azurerm_storage_container" "data" {
  name                  = "tenant-data"
  storage_account_id    = azurerm_storage_account.tenant.id
  container_access_type = "private"
}
