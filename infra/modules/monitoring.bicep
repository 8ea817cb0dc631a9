// Log Analytics (Container Apps environment logs) and Application Insights
// (Functions telemetry, ingested with the functions' identity: no keys).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string
param functionsPrincipalId string

var builtinRoles = loadJsonContent('../builtin-roles.json')

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource functionsPublishTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionsPrincipalId, builtinRoles['Monitoring Metrics Publisher'])
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Monitoring Metrics Publisher'])
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output logAnalyticsName string = logs.name
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output appInsightsId string = appInsights.id
