// User-assigned identities. Each one gets only the roles its holder needs
// (assigned next to the resource they grant access to). User servers get none.

param location string
param tags object
param hubIdentityName string
param functionsIdentityName string
param pullIdentityName string

@description('The hub: sends lifecycle requests, reads statuses, reads its own Key Vault secrets.')
resource hub 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: hubIdentityName
  location: location
  tags: tags
}

@description('The functions: process lifecycle requests, write statuses, manage user container apps.')
resource functions 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionsIdentityName
  location: location
  tags: tags
}

@description('Image pulls only (AcrPull on the registry); nothing else.')
resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: pullIdentityName
  location: location
  tags: tags
}

output hubId string = hub.id
output hubPrincipalId string = hub.properties.principalId
output hubClientId string = hub.properties.clientId
output hubName string = hub.name
output functionsId string = functions.id
output functionsPrincipalId string = functions.properties.principalId
output functionsClientId string = functions.properties.clientId
output pullId string = pull.id
output pullName string = pull.name
output pullPrincipalId string = pull.properties.principalId
