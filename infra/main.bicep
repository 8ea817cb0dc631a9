// JupyterHub on Azure Container Apps with a serverless lifecycle.
//
//   rg-<env>         hub container app, Container Apps environment, Function App,
//                    storage (queue/table, functions host, homes), Key Vault,
//                    PostgreSQL, registry, monitoring, network
//   rg-<env>-users   users' container apps only (created by the functions)
//
// `azd up` deploys it (see docs/deploy.md); `az deployment sub create` works too.

targetScope = 'subscription'

// Names the code relies on (acaspawner.storage_config, docs/settings.md).
var lifecycleQueueName = 'aca-lifecycle'
var poisonQueueName = 'aca-lifecycle-poison'
var statusTableName = 'acaservers'
var homeStorageName = 'homes'
var homeShareName = 'homes'
var hubDatabaseName = 'jupyterhub'

// --- deployment -------------------------------------------------------------

@minLength(1)
@maxLength(40)
@description('Name of the deployment (azd environment name); names the resource groups.')
param environmentName string

@minLength(1)
@description('Azure region for everything (must offer Flex Consumption and Container Apps).')
param location string

@description('Tags put on every resource group and resource.')
param tags object = {}

// --- hub ----------------------------------------------------------------------

@description('Name of the hub container app; single-user servers reach the hub API at http://<name>:8081.')
param hubAppName string = 'jupyterhub'

@description('Hub id: table partition and tag of this hub\'s servers. Empty: the environment name.')
param hubId string = ''

@description('Hub image. Empty: keep the image of an existing hub app (azd), else a placeholder until the first deploy.')
param hubImage string = ''

@description('Set by azd (SERVICE_HUB_RESOURCE_EXISTS): the hub app already exists.')
param hubAppExists bool = false

@description('vCPU of the hub container (always on, one replica).')
param hubCpu string = '0.5'

@description('Memory of the hub container.')
param hubMemory string = '1Gi'

@description('Public URL of the hub if it has a custom domain (e.g. https://hub.example.org/). Empty: its Container Apps URL.')
param hubPublicUrl string = ''

@allowed([
  'github'
  'azuread'
])
@description('Login: GitHub or Microsoft Entra ID (OAuth). Nobody can log in until oauthClientId is set.')
param authenticator string = 'github'

@description('OAuth client id (GitHub OAuth app or Entra app registration). Its callback URL is the output OAUTH_CALLBACK_URL.')
param oauthClientId string = ''

@secure()
@description('OAuth client secret (may be empty until the OAuth app exists).')
param oauthClientSecret string

@description('Entra tenant for authenticator azuread. Empty: the deployment\'s tenant.')
param aadTenantId string = ''

@description('Token claim that becomes the JupyterHub user name (azuread).')
param aadUsernameClaim string = 'upn'

@description('Comma separated JupyterHub admin user names.')
param adminUsers string = ''

@description('Comma separated user names allowed to log in (admins always may).')
param allowedUsers string = ''

@description('Let users run several named servers.')
param allowNamedServers bool = false

@minValue(0)
@description('Named servers a user may have, running or stopped, besides the default one (allowNamedServers; 0 = no limit, which lets one user fill the core budget).')
param namedServerLimitPerUser int = 2

@minValue(0)
@description('Servers running at once on the whole hub; a start beyond it is refused (0 = no limit: the core budget of the environments still applies).')
param activeServerLimit int = 0

@minValue(0)
@description('Starts in progress at once; a start beyond it is refused (HTTP 429, try again). Above JupyterHub\'s 100: a start takes minutes here, and a class starts together (0 = no limit).')
param concurrentSpawnLimit int = 150

// --- user servers ---------------------------------------------------------------

@description('Default single-user image.')
param singleuserImage string = 'quay.io/jupyter/base-notebook:latest'

@description('Comma separated glob patterns every started image must match (enforced by the functions).')
param allowedImages string = 'quay.io/jupyter/*'

@description('vCPU of a user server (Consumption pairs: 0.25/0.5Gi, 0.5/1Gi, 1/2Gi, 2/4Gi, 4/8Gi).')
param singleuserCpu string = '0.5'

@description('Memory of a user server.')
param singleuserMemory string = '1Gi'

@description('Workload profile of user servers.')
param singleuserWorkloadProfile string = 'Consumption'

@description('Extra dedicated workload profiles: objects with name, workloadProfileType, minimumCount, maximumCount.')
param dedicatedWorkloadProfiles array = []

@description('JSON list for the spawner\'s profile_list (server options offered to users).')
param profileList string = '[]'

@description('Upper bound of cpu a server may request.')
param maxCpu string = '4'

@description('Upper bound of memory a server may request.')
param maxMemory string = '8Gi'

@description('Workload profiles a server may name, comma separated (dedicated and GPU profiles bill per node); empty: singleuserWorkloadProfile (or Consumption) alone.')
param allowedWorkloadProfiles string = ''

@minValue(0)
@description('Servers one user may run at once, counted by the functions whatever the hub says (0: no limit); keep it above namedServerLimitPerUser (the default server counts too).')
param maxServersPerUser int = 3

@description('vCPU one user\'s servers may hold together, counted by the functions (0: no limit).')
param maxCoresPerUser string = '4'

@minValue(1)
@description('Cores the functions may fill in each Container Apps environment (keep it at or below its core quota, 100 by default on Consumption); a start beyond it fails at once with NoCapacity.')
param environmentCoreBudget int = 100

@minValue(1)
@maxValue(15)
@description('Container Apps environments servers are placed in. 1: the hub\'s environment only. More: environments 2..N are internal environments in subnets of the same network, each with its own core quota (docs/deploy.md "More than one environment").')
param environmentCount int = 1

@allowed([
  'delete'
  'stop'
])
@description('What stopping a server does to its app: delete it, or keep it stopped for a faster restart.')
param stopMode string = 'delete'

@description('Seconds the hub waits for a server to start.')
param startTimeout int = 900

@description('Where users\' homes are mounted.')
param homeMountPath string = '/home/jovyan'

@description('SMB mount options of the homes volume (fit the Jupyter images\' jovyan user).')
param homeMountOptions string = 'uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl'

@description('Size limit of the homes share (GiB; billed by use).')
param homeShareQuotaGiB int = 1024

@description('Delete a user\'s home folder when the user or server is deleted.')
param homeDeleteOnDelete bool = false

// --- culler and reconciler ------------------------------------------------------

@description('NCRONTAB (6 fields) of the idle culler.')
param cullSchedule string = '0 */5 * * * *'

@description('Idle seconds before a server is stopped.')
param cullTimeout int = 3600

@minValue(0)
@description('Seconds after its start when a server is stopped even if active (0 = never). A server\'s own token can report activity, so without a maximum age a server kept "active" runs for ever.')
param cullMaxAge int = 28800

@description('Also delete idle users (adds read:users and delete:users to the culler\'s role). Refused together with homeDeleteOnDelete.')
param cullUsers bool = false

@description('Cull admins too: their servers and, with cullUsers, the admin users themselves. Default: true, false when cullUsers.')
param cullAdminUsers bool = !cullUsers

@description('NCRONTAB of the reconciler.')
param reconcileSchedule string = '30 */10 * * * *'

@description('Warm pool (ACA_WARM_POOL): a JSON list of profiles {name, image, cpu, memory, size, hours?} whose servers are kept running, ready for a click; empty: none (docs/settings.md).')
param warmPool string = ''

@description('NCRONTAB of the warm pool\'s refill (ACA_WARM_POOL_SCHEDULE).')
param warmPoolSchedule string = '*/20 * * * * *'

@description('Seconds in queued/provisioning before a server is marked failed.')
param stuckAfter int = 1200

// --- registry ---------------------------------------------------------------------

@description('Create a container registry for the hub image.')
param createRegistry bool = true

@description('Use this existing registry instead (createRegistry = false).')
param existingRegistryName string = ''

@description('Resource group of the existing registry. Empty: the hub\'s resource group.')
param existingRegistryResourceGroup string = ''

@description('Users\' images come from the registry too: user apps then get the pull-only identity for pulls.')
param userImagesFromRegistry bool = false

// --- database, functions, network -----------------------------------------------

@description('PostgreSQL major version.')
param postgresVersion string = '16'

@description('PostgreSQL compute size.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL tier of that size.')
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage (GiB).')
param postgresStorageSizeGB int = 32

@description('Key Vault purge protection (irreversible): on, `azd down --purge` cannot purge the vault, and the same environment name can be deployed again only 7 days after a teardown. For policies that require it; the vault only holds copies of values the azd environment keeps (docs/security.md).')
param vaultPurgeProtection bool = false

@description('Flex Consumption scale-out limit.')
param functionsMaximumInstanceCount int = 40

@description('Flex Consumption instance memory (MB).')
param functionsInstanceMemoryMB int = 2048

@description('Address space of the virtual network.')
param vnetAddressPrefix string = '10.42.0.0/16'

@description('Subnet of the Container Apps environment (workload profiles: /27 or larger).')
param appsSubnetPrefix string = '10.42.0.0/23'

@description('Subnet delegated to PostgreSQL.')
param postgresSubnetPrefix string = '10.42.4.0/24'

@description('Block of the virtual network that the subnets of environments 2..N are cut from, a /23 each in order (environmentCount > 1); must not overlap the other subnets.')
param extraAppsSubnetsPrefix string = '10.42.64.0/18'

// --- secrets (azd generates them once: infra/hooks/ensure_secrets.py) ----------

@secure()
@minLength(44)
@description('Fernet keys shared by hub and functions, comma separated; the first one seals.')
param sealingKeys string

@secure()
@minLength(44)
@description('Fernet keys of the functions alone (their follow-up messages), comma separated; never the hub\'s.')
param followUpKeys string

@secure()
@minLength(32)
@description('JUPYTERHUB_CRYPT_KEY: 32 bytes, hex (openssl rand -hex 32).')
param jupyterhubCryptKey string

@secure()
@minLength(32)
@description('JupyterHub cookie secret: 32 bytes, hex.')
param cookieSecret string

@secure()
@minLength(32)
@description('API token of the aca-idle-culler hub service.')
param cullerApiToken string


// --- names ------------------------------------------------------------------------

var token = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
})
var resolvedHubId = empty(hubId) ? environmentName : hubId
var resolvedTenantId = empty(aadTenantId) ? tenant().tenantId : aadTenantId
var registryResourceGroupName = empty(existingRegistryResourceGroup) ? hubGroup.name : existingRegistryResourceGroup
var useExistingRegistry = !createRegistry && !empty(existingRegistryName)

// Culling users deletes every user idle for cullTimeout (an hour by default), and deleting a
// user with homeDeleteOnDelete removes that user's home folder: together they would delete the
// home of anyone away for an hour. The deployment refuses the pair: fail() stops it when ARM
// evaluates the variable the functions' module takes (docs/settings.md).
var cullingDeletesHomes = cullUsers && homeDeleteOnDelete
var checkedHomeDeleteOnDelete = cullingDeletesHomes ? fail('cullUsers and homeDeleteOnDelete cannot both be true: the culler would delete the home folder of every user idle for cullTimeout. Turn one of them off.') : homeDeleteOnDelete

// Environments 2..N of the pool (environment k = index i + 2); none with environmentCount = 1.
var extraEnvironmentIndexes = range(0, environmentCount - 1)

resource hubGroup 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: allTags
}

resource usersGroup 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}-users'
  location: location
  tags: allTags
}

// --- identities, monitoring, network --------------------------------------------

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    hubIdentityName: 'id-hub-${token}'
    functionsIdentityName: 'id-func-${token}'
    pullIdentityName: 'id-pull-${token}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    logAnalyticsName: 'log-${token}'
    appInsightsName: 'appi-${token}'
    functionsPrincipalId: identities.outputs.functionsPrincipalId
  }
}

// The functions' telemetry as a workbook (Application Insights > Workbooks).
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    vnetName: 'vnet-${token}'
    addressPrefix: vnetAddressPrefix
    appsSubnetPrefix: appsSubnetPrefix
    postgresSubnetPrefix: postgresSubnetPrefix
    extraAppsSubnetPrefixes: [for i in extraEnvironmentIndexes: cidrSubnet(extraAppsSubnetsPrefix, 23, i)]
  }
}

// --- storage ------------------------------------------------------------------------

module lifecycleStorage 'modules/storage-lifecycle.bicep' = {
  name: 'lifecycle-storage'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    accountName: 'stq${token}'
    queueName: lifecycleQueueName
    poisonQueueName: poisonQueueName
    tableName: statusTableName
    hubPrincipalId: identities.outputs.hubPrincipalId
    functionsPrincipalId: identities.outputs.functionsPrincipalId
  }
}

module functionsStorage 'modules/storage-functions.bicep' = {
  name: 'functions-storage'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    accountName: 'stf${token}'
    deploymentContainerName: 'deployments'
    functionsPrincipalId: identities.outputs.functionsPrincipalId
  }
}

module homesStorage 'modules/storage-homes.bicep' = {
  name: 'homes-storage'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    accountName: 'sth${token}'
    shareName: homeShareName
    shareQuotaGiB: homeShareQuotaGiB
    functionsPrincipalId: identities.outputs.functionsPrincipalId
  }
}

// --- registry -------------------------------------------------------------------------

module registry 'modules/registry.bicep' = if (createRegistry) {
  name: 'registry'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    name: 'cr${token}'
    pullPrincipalId: identities.outputs.pullPrincipalId
  }
}

module existingRegistryAccess 'modules/registry-access.bicep' = if (useExistingRegistry) {
  name: 'registry-access'
  scope: resourceGroup(registryResourceGroupName)
  params: {
    registryName: existingRegistryName
    pullPrincipalId: identities.outputs.pullPrincipalId
  }
}

var registryServer = createRegistry ? registry.outputs.loginServer : (useExistingRegistry ? existingRegistryAccess.outputs.loginServer : '')

// --- database and secrets ----------------------------------------------------------------

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    serverName: 'psql-${token}'
    databaseName: hubDatabaseName
    adminPrincipalId: identities.outputs.hubPrincipalId
    adminPrincipalName: identities.outputs.hubName
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    delegatedSubnetId: network.outputs.postgresSubnetId
    vnetId: network.outputs.vnetId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    name: 'kv-${token}'
    hubPrincipalId: identities.outputs.hubPrincipalId
    functionsPrincipalId: identities.outputs.functionsPrincipalId
    purgeProtection: vaultPurgeProtection
    sealingKeys: sealingKeys
    followUpKeys: followUpKeys
    jupyterhubCryptKey: jupyterhubCryptKey
    cookieSecret: cookieSecret
    cullerApiToken: cullerApiToken
    oauthClientSecret: oauthClientSecret
  }
}

// --- Container Apps environments and who may use them --------------------------------------

// The hub's environment, the pool's first (ACA_ENVIRONMENT_ID): external, the hub's ingress is public.
module appsEnvironment 'modules/environment.bicep' = {
  name: 'environment'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    name: 'cae-${token}'
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    infrastructureSubnetId: network.outputs.appsSubnetId
    internal: false
    dedicatedWorkloadProfiles: dedicatedWorkloadProfiles
    homesAccountName: homesStorage.outputs.accountName
    homeStorageName: homeStorageName
    homeShareName: homesStorage.outputs.shareName
  }
}

// Environments 2..N: internal (no public endpoint), each in its own subnet, with the same
// homes storage and workload profiles as the first, so that any server fits in any of them.
module extraEnvironments 'modules/environment.bicep' = [for i in extraEnvironmentIndexes: {
  name: 'environment-${i + 2}'
  scope: hubGroup
  params: {
    location: location
    tags: allTags
    name: 'cae-${token}-${i + 2}'
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    infrastructureSubnetId: network.outputs.extraAppsSubnetIds[i]
    internal: true
    dedicatedWorkloadProfiles: dedicatedWorkloadProfiles
    homesAccountName: homesStorage.outputs.accountName
    homeStorageName: homeStorageName
    homeShareName: homesStorage.outputs.shareName
  }
}]

// The hub's proxy (in the first environment, in the same network) resolves <app>.<default domain>
// of an internal environment through a private DNS zone linked to the network.
module extraEnvironmentDns 'modules/environment-dns.bicep' = [for i in extraEnvironmentIndexes: {
  name: 'environment-dns-${i + 2}'
  scope: hubGroup
  params: {
    tags: allTags
    defaultDomain: extraEnvironments[i].outputs.defaultDomain
    staticIp: extraEnvironments[i].outputs.staticIp
    vnetId: network.outputs.vnetId
  }
}]

module customRoles 'modules/custom-roles.bicep' = {
  name: 'custom-roles-${token}' // subscription-level deployment names must not collide across environments
  params: {
    hubResourceGroupId: hubGroup.id
    usersResourceGroupId: usersGroup.id
  }
}

module environmentAccess 'modules/environment-access.bicep' = {
  name: 'environment-access'
  scope: hubGroup
  params: {
    environmentName: appsEnvironment.outputs.name
    functionsPrincipalId: identities.outputs.functionsPrincipalId
    environmentJoinerRoleId: customRoles.outputs.environmentJoinerId
    pullIdentityName: identities.outputs.pullName
    allowPullIdentityAssignment: userImagesFromRegistry && !empty(registryServer)
  }
}

// The same join right in environments 2..N. The pull identity's assignment is a role on the
// identity, not on an environment: environmentAccess grants it once for all of them.
module extraEnvironmentAccess 'modules/environment-access.bicep' = [for i in extraEnvironmentIndexes: {
  name: 'environment-access-${i + 2}'
  scope: hubGroup
  params: {
    environmentName: extraEnvironments[i].outputs.name
    functionsPrincipalId: identities.outputs.functionsPrincipalId
    environmentJoinerRoleId: customRoles.outputs.environmentJoinerId
    pullIdentityName: identities.outputs.pullName
    allowPullIdentityAssignment: false
  }
}]

module usersAccess 'modules/users-access.bicep' = {
  name: 'users-access'
  scope: usersGroup
  params: {
    functionsPrincipalId: identities.outputs.functionsPrincipalId
    appsOperatorRoleId: customRoles.outputs.appsOperatorId
  }
}

// --- URLs -----------------------------------------------------------------------------------

var publicUrl = empty(hubPublicUrl) ? 'https://${hubAppName}.${appsEnvironment.outputs.defaultDomain}/' : (endsWith(hubPublicUrl, '/') ? hubPublicUrl : '${hubPublicUrl}/')
var hubConnectUrl = 'http://${hubAppName}:8081'
var oauthCallbackUrl = '${publicUrl}hub/oauth_callback'

// --- the hub ----------------------------------------------------------------------------------

module existingHub 'modules/fetch-container-image.bicep' = {
  name: 'existing-hub-image'
  scope: hubGroup
  params: {
    exists: hubAppExists
    name: hubAppName
  }
}

var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
var existingHubImage = hubAppExists ? existingHub.outputs.containers[0].image : ''
var resolvedHubImage = !empty(hubImage) ? hubImage : (hubAppExists ? existingHubImage : placeholderImage)

module hub 'modules/hub.bicep' = {
  name: 'hub'
  scope: hubGroup
  dependsOn: [
    // the app reads Key Vault secrets and storage as soon as it starts
    vault
    lifecycleStorage
    postgres
  ]
  params: {
    location: location
    tags: allTags
    name: hubAppName
    environmentId: appsEnvironment.outputs.id
    image: resolvedHubImage
    isPlaceholderImage: resolvedHubImage == placeholderImage
    cpu: hubCpu
    memory: hubMemory
    identityId: identities.outputs.hubId
    identityClientId: identities.outputs.hubClientId
    pullIdentityId: identities.outputs.pullId
    registryServer: registryServer
    vaultUris: vault.outputs.uris
    dbUrl: postgres.outputs.entraDbUrl
    hubId: resolvedHubId
    publicUrl: publicUrl
    hubConnectUrl: hubConnectUrl
    queueAccountUrl: lifecycleStorage.outputs.queueEndpoint
    tableAccountUrl: lifecycleStorage.outputs.tableEndpoint
    queueName: lifecycleQueueName
    tableName: statusTableName
    singleuserImage: singleuserImage
    singleuserCpu: singleuserCpu
    singleuserMemory: singleuserMemory
    singleuserWorkloadProfile: singleuserWorkloadProfile
    homeStorageName: appsEnvironment.outputs.homeStorageName
    homeMountPath: homeMountPath
    homeMountOptions: homeMountOptions
    startTimeout: startTimeout
    profileList: profileList
    allowNamedServers: allowNamedServers
    namedServerLimitPerUser: namedServerLimitPerUser
    activeServerLimit: activeServerLimit
    concurrentSpawnLimit: concurrentSpawnLimit
    cullUsers: cullUsers
    authenticator: authenticator
    oauthClientId: oauthClientId
    oauthCallbackUrl: oauthCallbackUrl
    aadTenantId: resolvedTenantId
    aadUsernameClaim: aadUsernameClaim
    adminUsers: adminUsers
    allowedUsers: allowedUsers
  }
}

// --- the functions ------------------------------------------------------------------------------

module functions 'modules/functions.bicep' = {
  name: 'functions'
  scope: hubGroup
  dependsOn: [
    vault
    lifecycleStorage
    environmentAccess
    extraEnvironmentAccess
    usersAccess
  ]
  params: {
    location: location
    tags: allTags
    planName: 'plan-${token}'
    appName: 'func-${token}'
    identityId: identities.outputs.functionsId
    identityClientId: identities.outputs.functionsClientId
    hostStorageAccountName: functionsStorage.outputs.accountName
    deploymentContainerUrl: functionsStorage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maximumInstanceCount: functionsMaximumInstanceCount
    instanceMemoryMB: functionsInstanceMemoryMB
    queueServiceUri: lifecycleStorage.outputs.queueEndpoint
    tableServiceUri: lifecycleStorage.outputs.tableEndpoint
    queueName: lifecycleQueueName
    tableName: statusTableName
    hubId: resolvedHubId
    vaultUris: vault.outputs.uris
    sealMaxAge: 900
    usersResourceGroupName: usersGroup.name
    environmentId: appsEnvironment.outputs.id
    workloadProfile: singleuserWorkloadProfile
    registryServer: userImagesFromRegistry ? registryServer : ''
    registryIdentityId: userImagesFromRegistry && !empty(registryServer) ? identities.outputs.pullId : ''
    allowedImages: allowedImages
    maxCpu: maxCpu
    environmentCoreBudget: environmentCoreBudget
    extraEnvironmentIds: [for i in extraEnvironmentIndexes: extraEnvironments[i].outputs.id]
    maxMemory: maxMemory
    allowedWorkloadProfiles: allowedWorkloadProfiles
    maxServersPerUser: maxServersPerUser
    maxCoresPerUser: maxCoresPerUser
    hubSubnetPrefix: appsSubnetPrefix
    stopMode: stopMode
    homeStorageName: appsEnvironment.outputs.homeStorageName
    homeFilesAccountUrl: homesStorage.outputs.fileEndpoint
    homeShareName: homesStorage.outputs.shareName
    homeMountPath: homeMountPath
    homeMountOptions: homeMountOptions
    homeDeleteOnDelete: checkedHomeDeleteOnDelete
    armPollInterval: 1
    spawnDeadline: 480
    hubApiUrl: '${publicUrl}hub/api'
    cullSchedule: cullSchedule
    cullTimeout: cullTimeout
    cullMaxAge: cullMaxAge
    cullUsers: cullUsers
    cullAdminUsers: cullAdminUsers
    cullDefaultServers: true
    cullNamedServers: true
    removeNamedServers: false
    cullConcurrency: 10
    cullPageSize: 200
    cullDryRun: false
    cullStopWait: 60
    hubApiTimeout: 30
    reconcileSchedule: reconcileSchedule
    warmPool: warmPool
    warmPoolSchedule: warmPoolSchedule
    stuckAfter: stuckAfter
    reconcileMaxArmCalls: 100
    reconcileGrace: 300
  }
}

// --- outputs (azd stores them in the environment) --------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = hubGroup.name
output ACA_USERS_RESOURCE_GROUP string = usersGroup.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registryServer
output HUB_URL string = publicUrl
output HUB_APP_NAME string = hub.outputs.name
output HUB_INTERNAL_API_URL string = '${hubConnectUrl}/hub/api'
output OAUTH_CALLBACK_URL string = oauthCallbackUrl
output FUNCTION_APP_NAME string = functions.outputs.name
output CONTAINER_APPS_ENVIRONMENT_NAME string = appsEnvironment.outputs.name
output LIFECYCLE_STORAGE_ACCOUNT string = lifecycleStorage.outputs.accountName
output FUNCTIONS_STORAGE_ACCOUNT string = functionsStorage.outputs.accountName
output HOMES_STORAGE_ACCOUNT string = homesStorage.outputs.accountName
output KEY_VAULT_NAME string = vault.outputs.name
output POSTGRES_SERVER string = postgres.outputs.serverName
output FUNCTIONS_CUSTOM_ROLES array = [
  customRoles.outputs.appsOperatorName
  customRoles.outputs.environmentJoinerName
]
