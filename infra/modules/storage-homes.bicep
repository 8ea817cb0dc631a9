// Users' homes: one SMB share, each user's home a subPath of it. SMB mounts in
// Container Apps authenticate with the account key, so this account is separate
// from the identity-only queue/table account and holds nothing but homes.

param location string
param tags object
param accountName string
param shareName string
param shareQuotaGiB int
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
    allowSharedKeyAccess: true // SMB mounts of environment storage use the key
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource share 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: shareName
  properties: {
    accessTier: 'TransactionOptimized'
    enabledProtocols: 'SMB'
    shareQuota: shareQuotaGiB
  }
}

// The functions create and remove a user's home folder through the Files REST
// API with their identity (OAuth with the backup intent needs this role).
resource functionsManageHomes 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionsPrincipalId, builtinRoles['Storage File Data Privileged Contributor'])
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage File Data Privileged Contributor'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output accountName string = account.name
output fileEndpoint string = account.properties.primaryEndpoints.file
output shareName string = share.name
