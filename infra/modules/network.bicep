// One virtual network: a subnet per Container Apps environment and a private
// subnet for PostgreSQL, which is therefore not reachable from the internet.
// The hub's environment has the subnet `apps`; environments 2..N of the pool
// (main.bicep, environmentCount) get `apps-2` ... `apps-N`, one per prefix of
// extraAppsSubnetPrefixes (empty with one environment: the network of old).

param location string
param tags object
param vnetName string
param addressPrefix string
param appsSubnetPrefix string
param postgresSubnetPrefix string
@description('Address prefixes of the subnets of environments 2..N, in order (each delegated to Container Apps).')
param extraAppsSubnetPrefixes array

var coreSubnets = [
  {
    name: 'apps'
    properties: {
      addressPrefix: appsSubnetPrefix
      delegations: [
        {
          name: 'containerapps'
          properties: {
            serviceName: 'Microsoft.App/environments'
          }
        }
      ]
    }
  }
  {
    name: 'postgres'
    properties: {
      addressPrefix: postgresSubnetPrefix
      delegations: [
        {
          name: 'postgres'
          properties: {
            serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers'
          }
        }
      ]
    }
  }
]

// Environment k (k = i + 2) in subnet apps-k; a workload-profiles environment needs a
// dedicated subnet delegated to Microsoft.App/environments.
var extraAppsSubnets = [for (prefix, i) in extraAppsSubnetPrefixes: {
  name: 'apps-${i + 2}'
  properties: {
    addressPrefix: prefix
    delegations: [
      {
        name: 'containerapps'
        properties: {
          serviceName: 'Microsoft.App/environments'
        }
      }
    ]
  }
}]

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    // every subnet in this list, none as a separate resource: a PUT of the network
    // sets its subnets to exactly this list
    subnets: concat(coreSubnets, extraAppsSubnets)
  }
}

output vnetId string = vnet.id
output appsSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'apps')
output postgresSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'postgres')
@description('Subnet ids of environments 2..N, in order.')
output extraAppsSubnetIds array = [for (prefix, i) in extraAppsSubnetPrefixes: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'apps-${i + 2}')]
