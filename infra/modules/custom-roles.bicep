// The two custom roles of the functions' identity, defined at subscription
// scope and assignable only in the resource group each one is meant for.
//
//   apps operator         Microsoft.App/containerApps read/write/delete/start/stop   users' group only
//   environment joiner    read the environment, create apps in it  the hub's group

targetScope = 'subscription'

param hubResourceGroupId string
param usersResourceGroupId string

resource appsOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(usersResourceGroupId, 'acaspawner-apps-operator')
  properties: {
    roleName: 'ACA spawner apps operator (${uniqueString(usersResourceGroupId)})'
    description: 'Create, update, start, stop and delete the container apps of JupyterHub users.'
    type: 'CustomRole'
    permissions: [
      {
        // exactly what functions/arm.py and the reconciler call: no listSecrets, no exec, no auth configs
        actions: [
          'Microsoft.App/containerApps/read'
          'Microsoft.App/containerApps/write'
          'Microsoft.App/containerApps/delete'
          'Microsoft.App/containerApps/start/action'
          'Microsoft.App/containerApps/stop/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      usersResourceGroupId
    ]
  }
}

resource environmentJoiner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(hubResourceGroupId, 'acaspawner-environment-joiner')
  properties: {
    roleName: 'ACA spawner environment joiner (${uniqueString(hubResourceGroupId)})'
    description: 'Read a Container Apps environment and create container apps in it.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.App/managedEnvironments/read'
          'Microsoft.App/managedEnvironments/join/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      hubResourceGroupId
    ]
  }
}

output appsOperatorId string = appsOperator.id
output appsOperatorName string = appsOperator.properties.roleName
output environmentJoinerId string = environmentJoiner.id
output environmentJoinerName string = environmentJoiner.properties.roleName
