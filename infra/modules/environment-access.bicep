// What the functions may do in the hub's resource group: read the Container
// Apps environment and create apps in it (join) — not touch the hub app or
// anything else. Optionally attach the pull-only identity to user apps.

param environmentName string
param functionsPrincipalId string
@description('Id of the custom "environment joiner" role (custom-roles.bicep).')
param environmentJoinerRoleId string
param pullIdentityName string
@description('Let the functions attach the pull-only identity to user apps (private user images).')
param allowPullIdentityAssignment bool

var builtinRoles = loadJsonContent('../builtin-roles.json')

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' existing = {
  name: environmentName
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: pullIdentityName
}

resource functionsJoinEnvironment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managedEnvironment.id, functionsPrincipalId, environmentJoinerRoleId)
  scope: managedEnvironment
  properties: {
    roleDefinitionId: environmentJoinerRoleId
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Microsoft.ManagedIdentity/userAssignedIdentities/assign/action on the pull identity only.
resource functionsAssignPullIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (allowPullIdentityAssignment) {
  name: guid(pullIdentity.id, functionsPrincipalId, builtinRoles['Managed Identity Operator'])
  scope: pullIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Managed Identity Operator'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}
