// A Container Apps environment (Consumption profile plus optional dedicated
// profiles) in its own subnet, and the environment storage for users' homes.
// The hub's environment is external (the hub's ingress is public); environments
// 2..N of the pool are internal: no public endpoint, only the static IP of an
// internal load balancer in their subnet (docs/deploy.md "More than one environment").

param location string
param tags object
param name string
param logAnalyticsName string
param infrastructureSubnetId string
@description('Internal environment: no public endpoint; apps with external ingress are reachable from the virtual network only, at its staticIp.')
param internal bool
@description('Extra (dedicated) workload profiles: objects with name, workloadProfileType (e.g. D4), minimumCount, maximumCount.')
param dedicatedWorkloadProfiles array
param homesAccountName string
param homeStorageName string
param homeShareName string

var consumptionProfile = [
  {
    name: 'Consumption'
    workloadProfileType: 'Consumption'
  }
]

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: logAnalyticsName
}

resource homesAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: homesAccountName
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
    vnetConfiguration: {
      infrastructureSubnetId: infrastructureSubnetId
      internal: internal
    }
    workloadProfiles: concat(consumptionProfile, dedicatedWorkloadProfiles)
    zoneRedundant: false
  }
}

// SMB; mount options (uid/gid, modes, mfsymlinks, nobrl) are set per volume by the spawner.
resource homes 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: managedEnvironment
  name: homeStorageName
  properties: {
    azureFile: {
      accountName: homesAccount.name
      accountKey: homesAccount.listKeys().keys[0].value
      shareName: homeShareName
      accessMode: 'ReadWrite'
    }
  }
}

output id string = managedEnvironment.id
output name string = managedEnvironment.name
output defaultDomain string = managedEnvironment.properties.defaultDomain
@description('Inbound IP: public for an external environment, the internal load balancer\'s private IP for an internal one.')
output staticIp string = managedEnvironment.properties.staticIp
output homeStorageName string = homes.name
