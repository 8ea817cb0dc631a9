// The Functions host's own storage (AzureWebJobsStorage: leases, timer
// schedules, keys) and the Flex Consumption deployment container. Identity only.

param location string
param tags object
param accountName string
param deploymentContainerName string
param functionsPrincipalId string

var builtinRoles = loadJsonContent('../builtin-roles.json')

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// What the Functions host documents for an identity-based AzureWebJobsStorage
// and a Flex Consumption deployment container. This account holds nothing else.
resource functionsOwnBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionsPrincipalId, builtinRoles['Storage Blob Data Owner'])
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Blob Data Owner'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output accountName string = account.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'
