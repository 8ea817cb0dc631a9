// Deployed into the resource group that holds the users' container apps (and
// nothing else): the functions may create, change, start, stop and delete
// container apps there. The hub app lives in another group, out of reach.

param functionsPrincipalId string
@description('Id of the custom "apps operator" role (custom-roles.bicep).')
param appsOperatorRoleId string

resource functionsOperateApps 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, functionsPrincipalId, appsOperatorRoleId)
  properties: {
    roleDefinitionId: appsOperatorRoleId
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}
