// The hub container app: configurable-http-proxy (port 8000, external ingress)
// in front of JupyterHub (port 8081). Single-user servers reach the hub API
// inside the environment at http://<hub app name>:8081 (an additional,
// internal-only port mapping); the proxy reaches the hub the same way.

param location string
param tags object
param name string
param environmentId string
param image string
@description('True while the app still runs the placeholder image of a first provision (no probes then).')
param isPlaceholderImage bool
param cpu string
param memory string
param identityId string
param identityClientId string
param pullIdentityId string
param registryServer string
@description('Versionless Key Vault secret URIs (sealingKeys, cryptKey, cookie, cullerApiToken, oauthClientSecret).')
param vaultUris object

// what jupyterhub_config.py reads
@description('PostgreSQL URL without a password: the hub signs in with its managed identity (Entra token).')
param dbUrl string
param hubId string
param publicUrl string
param hubConnectUrl string
param queueAccountUrl string
param tableAccountUrl string
param queueName string
param tableName string
param singleuserImage string
param singleuserCpu string
param singleuserMemory string
param singleuserWorkloadProfile string
param homeStorageName string
param homeMountPath string
param homeMountOptions string
param startTimeout int
param profileList string
param allowNamedServers bool
@description('Named servers per user besides the default one (0: no limit).')
param namedServerLimitPerUser int
@description('Servers running at once on the hub (0: no limit).')
param activeServerLimit int
@description('Starts in progress at once (0: no limit).')
param concurrentSpawnLimit int
param cullUsers bool
@allowed([
  'github'
  'azuread'
])
param authenticator string
param oauthClientId string
param oauthCallbackUrl string
param aadTenantId string
param aadUsernameClaim string
param adminUsers string
param allowedUsers string

var hasOauthClientSecret = !empty(vaultUris.oauthClientSecret)
var hubPort = 8081
var proxyPort = 8000
// the placeholder of a first provision (containerapps-helloworld) listens on 80: its ingress must target that
var placeholderPort = 80

var requiredVaultSecrets = [
  { name: 'sealing-keys', keyVaultUrl: vaultUris.sealingKeys, identity: identityId }
  { name: 'crypt-key', keyVaultUrl: vaultUris.cryptKey, identity: identityId }
  { name: 'cookie-secret', keyVaultUrl: vaultUris.cookie, identity: identityId }
  { name: 'culler-api-token', keyVaultUrl: vaultUris.cullerApiToken, identity: identityId }
]
var oauthVaultSecret = { name: 'oauth-client-secret', keyVaultUrl: vaultUris.oauthClientSecret, identity: identityId }
var vaultSecrets = hasOauthClientSecret ? concat(requiredVaultSecrets, [oauthVaultSecret]) : requiredVaultSecrets

var containerEnv = [
  // identity and the hub↔functions contract
  { name: 'ACA_HUB_ID', value: hubId }
  { name: 'ACA_SEALING_KEYS', secretRef: 'sealing-keys' }
  { name: 'ACA_QUEUE_ACCOUNT_URL', value: queueAccountUrl }
  { name: 'ACA_TABLE_ACCOUNT_URL', value: tableAccountUrl }
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  { name: 'ACA_LIFECYCLE_QUEUE', value: queueName }
  { name: 'ACA_STATUS_TABLE', value: tableName }
  // routing
  { name: 'JUPYTERHUB_PUBLIC_URL', value: publicUrl }
  { name: 'JUPYTERHUB_HUB_CONNECT_URL', value: hubConnectUrl }
  // hub state
  { name: 'JUPYTERHUB_DB_URL', value: dbUrl }
  { name: 'JUPYTERHUB_DB_ENTRA_AUTH', value: 'true' }
  { name: 'JUPYTERHUB_CRYPT_KEY', secretRef: 'crypt-key' }
  { name: 'JUPYTERHUB_COOKIE_SECRET', secretRef: 'cookie-secret' }
  // user servers
  { name: 'ACA_SINGLEUSER_IMAGE', value: singleuserImage }
  { name: 'ACA_SINGLEUSER_CPU', value: singleuserCpu }
  { name: 'ACA_SINGLEUSER_MEMORY', value: singleuserMemory }
  { name: 'ACA_WORKLOAD_PROFILE', value: singleuserWorkloadProfile }
  { name: 'ACA_HOME_STORAGE_NAME', value: homeStorageName }
  { name: 'ACA_HOME_MOUNT_PATH', value: homeMountPath }
  { name: 'ACA_HOME_MOUNT_OPTIONS', value: homeMountOptions }
  { name: 'ACA_START_TIMEOUT', value: string(startTimeout) }
  { name: 'ACA_PROFILE_LIST', value: profileList }
  { name: 'ACA_ALLOW_NAMED_SERVERS', value: allowNamedServers ? 'true' : 'false' }
  // limits
  { name: 'ACA_NAMED_SERVER_LIMIT_PER_USER', value: string(namedServerLimitPerUser) }
  { name: 'ACA_ACTIVE_SERVER_LIMIT', value: string(activeServerLimit) }
  { name: 'ACA_CONCURRENT_SPAWN_LIMIT', value: string(concurrentSpawnLimit) }
  // idle culler service
  { name: 'ACA_CULLER_API_TOKEN', secretRef: 'culler-api-token' }
  { name: 'ACA_CULL_USERS', value: cullUsers ? 'true' : 'false' }
  // the admins' status page at /services/aca-status/ (docs/observability.md)
  { name: 'ACA_STATUS_PAGE', value: 'true' }
  // login
  { name: 'ACA_AUTHENTICATOR', value: authenticator }
  { name: 'OAUTH_CLIENT_ID', value: oauthClientId }
  hasOauthClientSecret ? { name: 'OAUTH_CLIENT_SECRET', secretRef: 'oauth-client-secret' } : { name: 'OAUTH_CLIENT_SECRET', value: '' }
  { name: 'OAUTH_CALLBACK_URL', value: oauthCallbackUrl }
  { name: 'AAD_TENANT_ID', value: aadTenantId }
  { name: 'AAD_USERNAME_CLAIM', value: aadUsernameClaim }
  { name: 'ACA_ADMIN_USERS', value: adminUsers }
  { name: 'ACA_ALLOWED_USERS', value: allowedUsers }
]

var probes = [
  {
    type: 'Startup'
    httpGet: {
      path: '/hub/health'
      port: hubPort
    }
    initialDelaySeconds: 5
    periodSeconds: 10
    failureThreshold: 10
  }
  {
    type: 'Liveness'
    httpGet: {
      path: '/hub/health'
      port: hubPort
    }
    periodSeconds: 30
    failureThreshold: 4
  }
  {
    type: 'Readiness'
    tcpSocket: {
      port: proxyPort
    }
    periodSeconds: 10
    failureThreshold: 3
  }
]

var registries = empty(registryServer) ? [] : [
  {
    server: registryServer
    identity: pullIdentityId
  }
]

resource hub 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'hub'
  })
  identity: {
    type: 'UserAssigned'
    // its own identity, and the pull-only one for its image (AcrPull, nothing else)
    userAssignedIdentities: {
      '${identityId}': {}
      '${pullIdentityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: isPlaceholderImage ? placeholderPort : proxyPort
        transport: 'http'
        allowInsecure: false
        additionalPortMappings: [
          {
            external: false
            targetPort: hubPort
            exposedPort: hubPort
          }
        ]
      }
      registries: registries
      secrets: vaultSecrets
    }
    template: {
      containers: [
        {
          name: 'hub'
          image: image
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: containerEnv
          probes: isPlaceholderImage ? [] : probes
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

output name string = hub.name
output fqdn string = hub.properties.configuration.ingress.fqdn
