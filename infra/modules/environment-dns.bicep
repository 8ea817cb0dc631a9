// Name resolution for an internal Container Apps environment (environments 2..N
// of the pool): a private DNS zone named after the environment's default domain,
// linked to the virtual network, whose wildcard A record sends every
// `<app>.<default domain>` to the environment's static IP (its internal load
// balancer). The hub's proxy, in the hub's environment in the same network,
// resolves users' apps there through the network's DNS, as it resolves PostgreSQL.
//
// Only `*`, no `*.internal`: an app with environment-only ingress
// (`<app>.internal.<default domain>`) answers 404 to any caller outside its
// environment, so users' apps in these environments need external ingress, which
// in an internal environment means the virtual network only, at `<app>.<default
// domain>` (docs/deploy.md "More than one environment").

param tags object
@description('properties.defaultDomain of the environment: the zone\'s name.')
param defaultDomain string
@description('properties.staticIp of the environment: its internal load balancer.')
param staticIp string
param vnetId string

resource zone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: defaultDomain
  location: 'global'
  tags: tags
}

resource apps 'Microsoft.Network/privateDnsZones/A@2020-06-01' = {
  parent: zone
  name: '*'
  properties: {
    ttl: 3600
    aRecords: [
      {
        ipv4Address: staticIp
      }
    ]
  }
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: zone
  name: 'vnet'
  location: 'global'
  tags: tags
  properties: {
    // a network may have one auto-registration zone; these zones only answer
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

output zoneName string = zone.name
