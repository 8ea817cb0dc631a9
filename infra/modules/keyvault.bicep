// Key Vault holding every secret of the deployment. RBAC mode; each identity
// may read exactly the secrets it uses (role assignments on single secrets).

param location string
param tags object
param name string
param hubPrincipalId string
param functionsPrincipalId string
@description('Purge protection (irreversible once on): a deleted vault cannot be purged before its 7 days of soft delete are over.')
param purgeProtection bool

@secure()
param sealingKeys string
@secure()
@description('The functions\' own Fernet keys for their follow-up messages: only the functions may read them.')
param followUpKeys string
@secure()
param jupyterhubCryptKey string
@secure()
param cookieSecret string
@secure()
param cullerApiToken string
@secure()
param oauthClientSecret string

var builtinRoles = loadJsonContent('../builtin-roles.json')
var secretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['Key Vault Secrets User'])
var hasOauthClientSecret = !empty(oauthClientSecret)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // ARM refuses `false`: when off, the property is left out (docs/security.md, "Key Vault")
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

resource sealingKeysSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'aca-sealing-keys'
  properties: {
    value: sealingKeys
    contentType: 'Fernet keys, comma separated; the first one seals'
  }
}

resource followUpKeysSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'aca-followup-keys'
  properties: {
    value: followUpKeys
    contentType: 'Fernet keys of the functions alone (their follow-ups), comma separated; the first one seals'
  }
}

resource cryptKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'jupyterhub-crypt-key'
  properties: {
    value: jupyterhubCryptKey
    contentType: 'JUPYTERHUB_CRYPT_KEY (32 bytes, hex)'
  }
}

resource cookieSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'jupyterhub-cookie-secret'
  properties: {
    value: cookieSecret
    contentType: 'JupyterHub cookie secret (32 bytes, hex)'
  }
}

resource cullerTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'aca-culler-api-token'
  properties: {
    value: cullerApiToken
    contentType: 'API token of the aca-idle-culler hub service'
  }
}

resource oauthClientSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (hasOauthClientSecret) {
  parent: vault
  name: 'oauth-client-secret'
  properties: {
    value: oauthClientSecret
    contentType: 'OAuth client secret of the hub login'
  }
}

// --- the hub reads its own secrets ------------------------------------------

resource hubReadsSealingKeys 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sealingKeysSecret.id, hubPrincipalId, secretsUser)
  scope: sealingKeysSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hubReadsCryptKey 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cryptKeySecret.id, hubPrincipalId, secretsUser)
  scope: cryptKeySecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hubReadsCookieSecret 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cookieSecretSecret.id, hubPrincipalId, secretsUser)
  scope: cookieSecretSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hubReadsCullerToken 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cullerTokenSecret.id, hubPrincipalId, secretsUser)
  scope: cullerTokenSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hubReadsOauthClientSecret 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOauthClientSecret) {
  name: guid(oauthClientSecretSecret.id, hubPrincipalId, secretsUser)
  scope: oauthClientSecretSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: hubPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the functions read the sealing keys and the culler's hub token ---------

resource functionsReadSealingKeys 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sealingKeysSecret.id, functionsPrincipalId, secretsUser)
  scope: sealingKeysSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// the hub gets no role here: whoever holds the hub's keys must not be able to forge the functions' follow-ups
resource functionsReadFollowUpKeys 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(followUpKeysSecret.id, functionsPrincipalId, secretsUser)
  scope: followUpKeysSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionsReadCullerToken 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cullerTokenSecret.id, functionsPrincipalId, secretsUser)
  scope: cullerTokenSecret
  properties: {
    roleDefinitionId: secretsUser
    principalId: functionsPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
@description('Versionless secret URIs: consumers pick up a rotated value without a redeployment.')
output uris object = {
  sealingKeys: sealingKeysSecret.properties.secretUri
  followUpKeys: followUpKeysSecret.properties.secretUri
  cryptKey: cryptKeySecret.properties.secretUri
  cookie: cookieSecretSecret.properties.secretUri
  cullerApiToken: cullerTokenSecret.properties.secretUri
  oauthClientSecret: hasOauthClientSecret ? oauthClientSecretSecret.properties.secretUri : ''
}
