// The Function App (Flex Consumption, Python 3.11): lifecycle queue handler,
// idle culler and reconciler. Its app settings are exactly what the functions
// read (docs/settings.md) plus what the Functions host itself needs.

param location string
param tags object
param planName string
param appName string
param identityId string
param identityClientId string
param hostStorageAccountName string
param deploymentContainerUrl string
param appInsightsConnectionString string
param maximumInstanceCount int
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

// what the functions read
param queueServiceUri string
param tableServiceUri string
param queueName string
param tableName string
param hubId string
@description('Versionless Key Vault secret URIs (sealingKeys, followUpKeys, cullerApiToken).')
param vaultUris object
param sealMaxAge int
param usersResourceGroupName string
param environmentId string
param workloadProfile string
param registryServer string
param registryIdentityId string
param allowedImages string
param maxCpu string
@description('Cores the functions may fill in each environment (ACA_ENVIRONMENTS).')
param environmentCoreBudget int
@description('Resource ids of the pool\'s environments after environmentId (ACA_ENVIRONMENTS); empty: environmentId alone.')
param extraEnvironmentIds array
param maxMemory string
@description('Workload profiles a server may name (ACA_ALLOWED_WORKLOAD_PROFILES); empty: workloadProfile alone.')
param allowedWorkloadProfiles string
@description('Servers one user may run at once (ACA_MAX_SERVERS_PER_USER; 0: no limit).')
param maxServersPerUser int
@description('vCPU one user\'s servers may hold together (ACA_MAX_CORES_PER_USER; 0: no limit).')
param maxCoresPerUser string
@description('Address range the hub\'s proxy connects from (its environment\'s subnet): the only one servers of environments 2..N accept.')
param hubSubnetPrefix string
@allowed([
  'delete'
  'stop'
])
param stopMode string
param homeStorageName string
param homeFilesAccountUrl string
param homeShareName string
@description('Where every server mounts its user\'s home folder (the functions decide, not the hub).')
param homeMountPath string
@description('SMB mount options of the homes volume.')
param homeMountOptions string
param homeDeleteOnDelete bool
param armPollInterval int
param spawnDeadline int
param hubApiUrl string
param cullSchedule string
param cullTimeout int
param cullMaxAge int
param cullUsers bool
param cullAdminUsers bool
param cullDefaultServers bool
param cullNamedServers bool
param removeNamedServers bool
param cullConcurrency int
param cullPageSize int
param cullDryRun bool
param cullStopWait int
param hubApiTimeout int
param reconcileSchedule string
param warmPool string
param warmPoolSchedule string
param stuckAfter int
param reconcileMaxArmCalls int
param reconcileGrace int

// ACA_ENVIRONMENTS: the hub's environment first, then the others, each with the same budget
var firstEnvironmentBudget = [
  {
    id: environmentId
    cores: environmentCoreBudget
  }
]
// the others are internal: apps there get the network's ingress, and call the hub at its public URL
// (its internal name resolves only inside its own environment)
var extraEnvironmentBudgets = [for id in extraEnvironmentIds: {
  id: id
  cores: environmentCoreBudget
  vnet_ingress: true
  hub_api_url: hubApiUrl
  allow_from: [hubSubnetPrefix]
}]
var environmentBudgets = concat(firstEnvironmentBudget, extraEnvironmentBudgets)

var appSettings = {
  // --- the Functions host: its own storage and telemetry, by identity ---
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // the Python worker's OpenTelemetry (host.json's telemetryMode is OpenTelemetry; docs/observability.md)
  PYTHON_ENABLE_OPENTELEMETRY: 'true'

  // --- lifecycle queue and status table: connection "AcaStorage", by identity ---
  AcaStorage__queueServiceUri: queueServiceUri
  AcaStorage__tableServiceUri: tableServiceUri
  AcaStorage__credential: 'managedidentity'
  AcaStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  ACA_LIFECYCLE_QUEUE: queueName
  ACA_STATUS_TABLE: tableName

  // --- the hub these functions serve, and the sealing keys they share ---
  ACA_HUB_ID: hubId
  ACA_SEALING_KEYS: '@Microsoft.KeyVault(SecretUri=${vaultUris.sealingKeys})'
  // the functions' own keys for their follow-ups: a secret the hub's identity cannot read
  ACA_FOLLOWUP_KEYS: '@Microsoft.KeyVault(SecretUri=${vaultUris.followUpKeys})'
  ACA_SEAL_MAX_AGE: string(sealMaxAge)

  // --- where and what user servers may be ---
  ACA_SUBSCRIPTION_ID: subscription().subscriptionId
  ACA_RESOURCE_GROUP: usersResourceGroupName
  ACA_ENVIRONMENT_ID: environmentId
  ACA_ENVIRONMENTS: string(environmentBudgets)
  ACA_LOCATION: location
  ACA_WORKLOAD_PROFILE: workloadProfile
  ACA_REGISTRY_SERVER: registryServer
  ACA_REGISTRY_IDENTITY: registryIdentityId
  ACA_ALLOWED_IMAGES: allowedImages
  ACA_ALLOWED_WORKLOAD_PROFILES: empty(allowedWorkloadProfiles) ? (empty(workloadProfile) ? 'Consumption' : workloadProfile) : allowedWorkloadProfiles
  ACA_MAX_SERVERS_PER_USER: string(maxServersPerUser)
  ACA_MAX_CORES_PER_USER: maxCoresPerUser
  ACA_MAX_CPU: maxCpu
  ACA_MAX_MEMORY: maxMemory
  ACA_STOP_MODE: stopMode
  ACA_ARM_POLL_INTERVAL: string(armPollInterval)
  ACA_SPAWN_DEADLINE: string(spawnDeadline)

  // --- users' homes ---
  ACA_HOME_STORAGE_NAME: homeStorageName
  ACA_HOME_FILES_ACCOUNT_URL: homeFilesAccountUrl
  ACA_HOME_SHARE_NAME: homeShareName
  ACA_HOME_MOUNT_PATH: homeMountPath
  ACA_HOME_MOUNT_OPTIONS: homeMountOptions
  ACA_HOME_DELETE_ON_DELETE: homeDeleteOnDelete ? 'true' : 'false'

  // --- idle culler ---
  ACA_CULL_SCHEDULE: cullSchedule
  ACA_HUB_API_URL: hubApiUrl
  ACA_HUB_API_TOKEN: '@Microsoft.KeyVault(SecretUri=${vaultUris.cullerApiToken})'
  ACA_CULL_TIMEOUT: string(cullTimeout)
  ACA_CULL_MAX_AGE: string(cullMaxAge)
  ACA_CULL_USERS: cullUsers ? 'true' : 'false'
  ACA_CULL_ADMIN_USERS: cullAdminUsers ? 'true' : 'false'
  ACA_CULL_DEFAULT_SERVERS: cullDefaultServers ? 'true' : 'false'
  ACA_CULL_NAMED_SERVERS: cullNamedServers ? 'true' : 'false'
  ACA_REMOVE_NAMED_SERVERS: removeNamedServers ? 'true' : 'false'
  ACA_CULL_CONCURRENCY: string(cullConcurrency)
  ACA_CULL_PAGE_SIZE: string(cullPageSize)
  ACA_CULL_DRY_RUN: cullDryRun ? 'true' : 'false'
  ACA_CULL_STOP_WAIT: string(cullStopWait)
  ACA_HUB_API_TIMEOUT: string(hubApiTimeout)

  // --- reconciler ---
  ACA_RECONCILE_SCHEDULE: reconcileSchedule
  ACA_WARM_POOL: warmPool
  ACA_WARM_POOL_SCHEDULE: warmPoolSchedule
  ACA_STUCK_AFTER: string(stuckAfter)
  ACA_RECONCILE_MAX_ARM_CALLS: string(reconcileMaxArmCalls)
  ACA_RECONCILE_GRACE: string(reconcileGrace)
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'functions'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// deployments use Microsoft Entra ID; no publishing passwords
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
