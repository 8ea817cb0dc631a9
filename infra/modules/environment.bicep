// The Container Apps environment (Consumption profile plus optional dedicated
// profiles) in its own subnet, and the environment storage for users' homes.

param location string
param tags object
param name string
param logAnalyticsName string
param infrastructureSubnetId string
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
      internal: false
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
output homeStorageName string = homes.name
