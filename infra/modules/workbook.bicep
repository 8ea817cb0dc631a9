// An Azure Monitor workbook over the functions' telemetry in Application Insights:
// spawn times, failed starts, capacity per environment, the timers' runs and one
// request's log lines. Its content is workbook.json, which reads the metrics that
// functions/telemetry.py sends (tests/infra/test_workbook.py holds it to them).

param location string
param tags object

@description('Resource id of the Application Insights component the workbook reads (and is listed under).')
param appInsightsId string

@description('Name of the workbook in the portal.')
param displayName string = 'JupyterHub on Container Apps'

// Opened outside the component (Azure Monitor > Workbooks), the queries still read it.
var resourceContext = {
  fallbackResourceIds: [
    appInsightsId
  ]
}
var content = union(loadJsonContent('workbook.json'), resourceContext)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // a workbook's name is a GUID: the same one on every deployment, so that a deployment updates it
  name: guid(appInsightsId, 'workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    description: 'Spawn times, failed starts, capacity per environment, the timers\' runs and one request\'s log lines.'
    serializedData: string(content)
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
output name string = workbook.name
