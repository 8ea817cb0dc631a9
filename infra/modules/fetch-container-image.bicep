// The image an existing container app runs, so that re-provisioning keeps the
// image `azd deploy` put there instead of resetting it.

param exists bool
param name string

resource existingApp 'Microsoft.App/containerApps@2024-03-01' existing = if (exists) {
  name: name
}

output containers array = exists ? existingApp.properties.template.containers : []
