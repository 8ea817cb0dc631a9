// The lifecycle queue, its poison queue and the status table, in an account
// that accepts Microsoft Entra identities only (no account keys, no SAS).
// Roles are granted on the single queue or table they concern.

param location string
param tags object
param accountName string
param queueName string
param poisonQueueName string
param tableName string
param hubPrincipalId string
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

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource lifecycleQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: queueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: poisonQueueName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource statusTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

// --- the hub: put requests on the queue, read statuses; nothing else -------

resource hubSendsRequests 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lifecycleQueue.id, hubPrincipalId, builtinRoles['Storage Queue Data Message Sender'])
  scope: lifecycleQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Queue Data Message Sender'])
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hubReadsStatus 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(statusTable.id, hubPrincipalId, builtinRoles['Storage Table Data Reader'])
  scope: statusTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Table Data Reader'])
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the functions: the trigger, follow-ups, the poison queue, status writes

// the trigger reads queue properties (length, for scaling) ...
resource functionsReadQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lifecycleQueue.id, functionsPrincipalId, builtinRoles['Storage Queue Data Reader'])
  scope: lifecycleQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Queue Data Reader'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ... and receives and deletes messages
resource functionsProcessQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lifecycleQueue.id, functionsPrincipalId, builtinRoles['Storage Queue Data Message Processor'])
  scope: lifecycleQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Queue Data Message Processor'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ... and puts its own follow-up messages back on it: after ARM accepts a
// write, a sealed follow-up (sent with a visibility delay) makes a later
// invocation observe the app and record the outcome. Adding messages is all
// that needs (the Processor role above cannot add, Contributor could also
// create and delete queues).
resource functionsSendFollowUps 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lifecycleQueue.id, functionsPrincipalId, builtinRoles['Storage Queue Data Message Sender'])
  scope: lifecycleQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Queue Data Message Sender'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The host moves a message that failed maxDequeueCount times to <queue>-poison,
// creating that queue if needed (create-if-not-exists needs more than "send").
// The reconciler receives and deletes poison messages past the sealing maximum
// age (they hold sealed API tokens), which this role also allows.
// Scoped to the poison queue alone.
resource functionsWritePoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, functionsPrincipalId, builtinRoles['Storage Queue Data Contributor'])
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Queue Data Contributor'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionsWriteStatus 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(statusTable.id, functionsPrincipalId, builtinRoles['Storage Table Data Contributor'])
  scope: statusTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Storage Table Data Contributor'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output accountName string = account.name
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
