// The hub's database: PostgreSQL flexible server (Burstable B1ms) with private
// access only (delegated subnet + private DNS zone). JupyterHub warns against
// SQLite on network file systems.
//
// Logins are Microsoft Entra only (password authentication disabled): the hub's
// managed identity is the server's Entra administrator and signs in with a token.
// User containers share the hub's network and can reach port 5432, but they hold
// no identity, so there is nothing they could log in with.

param location string
param tags object
param serverName string
param databaseName string
@description('Object (principal) id of the hub\'s managed identity: the Entra administrator.')
param adminPrincipalId string
@description('Name of the hub\'s managed identity: the PostgreSQL role it signs in as.')
param adminPrincipalName string
param version string
param skuName string
param skuTier string
param storageSizeGB int
param delegatedSubnetId string
param vnetId string

resource dnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: '${serverName}.private.postgres.database.azure.com'
  location: 'global'
  tags: tags
}

resource dnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: dnsZone
  name: 'vnet'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: serverName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      delegatedSubnetResourceId: delegatedSubnetId
      privateDnsZoneArmResourceId: dnsZone.id
      publicNetworkAccess: 'Disabled'
    }
  }
  dependsOn: [
    dnsLink
  ]
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

resource hubAdministrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminPrincipalId
  properties: {
    principalType: 'ServicePrincipal'
    principalName: adminPrincipalName
    tenantId: tenant().tenantId
  }
  dependsOn: [
    database
  ]
}

output host string = server.properties.fullyQualifiedDomainName
output serverName string = server.name
output databaseName string = database.name
@description('SQLAlchemy URL of the hub database: no password, the hub adds an Entra token per connection.')
output entraDbUrl string = 'postgresql+psycopg2://${uriComponent(adminPrincipalName)}@${server.properties.fullyQualifiedDomainName}:5432/${database.name}?sslmode=require'

