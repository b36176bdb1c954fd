output "cluster_name" {
  value = azurerm_kubernetes_cluster.tenant.name
}

output "resource_group" {
  value = azurerm_resource_group.tenant.name
}

output "api_endpoint" {
  value = "https://${azurerm_kubernetes_cluster.tenant.fqdn}:443"
}

output "ingress_ip" {
  value = azurerm_public_ip.ingress.ip_address
}

output "node_resource_group" {
  value = azurerm_kubernetes_cluster.tenant.node_resource_group
}

output "storage_account_name" {
  value = azurerm_storage_account.tenant.name
}

# Written by the driver to a 0600 kubeconfig file beside the state; only its path
# (kubeconfig_ref) leaves the driver.
output "kube_config" {
  value     = azurerm_kubernetes_cluster.tenant.kube_config_raw
  sensitive = true
}
