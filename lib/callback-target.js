'use strict'
// Where a queue callback may go. A job names its callback URL, so without a check a job could
// make the worker POST (signed) to the cloud metadata service, an admin port on localhost or
// any host of the private network (SSRF). Addresses are checked after DNS resolution, every
// one of them, and the request then connects to the address that was checked, so a name that
// resolves differently a moment later (DNS rebinding) cannot swap it.

const dns = require('node:dns')
const http = require('node:http')
const https = require('node:https')
const net = require('node:net')

// Not reachable from the public internet, or not one host: the ranges of RFC 6890 and its
// successors that a callback has no business reaching.
const BLOCKED = new net.BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", the unspecified address
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT (also Alibaba's metadata service, 100.100.100.200)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, the cloud metadata services (169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
]) {
  BLOCKED.addSubnet(network, prefix, 'ipv4')
}
for (const [network, prefix] of [
  ['::', 96], // unspecified, loopback (::1) and the deprecated IPv4-compatible addresses
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['64:ff9b:1::', 48], // local-use IPv4/IPv6 translation
  ['fc00::', 7], // unique-local (AWS's metadata service, fd00:ec2::254)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
]) {
  BLOCKED.addSubnet(network, prefix, 'ipv6')
}

/** The 8 groups of an IPv6 address (an IPv4 tail becomes two groups), or null. */
function ipv6Groups(address) {
  let text = address.toLowerCase().split('%')[0]
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const octets = v4[1].split('.').map(Number)
    text = `${text.slice(0, -v4[1].length)}${((octets[0] << 8) | octets[1]).toString(16)}:${((octets[2] << 8) | octets[3]).toString(16)}`
  }
  const [head, tail] = text.split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const missing = text.includes('::') ? 8 - left.length - right.length : 0
  const groups = [...left, ...Array(missing).fill('0'), ...right].map((g) => Number.parseInt(g, 16))
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : null
}

const ipv4Of = (high, low) => `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`

/** The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64, 6to4), or null. */
function embeddedIPv4(address) {
  const g = ipv6Groups(address)
  if (g === null) return null
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return ipv4Of(g[6], g[7]) // ::ffff:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return ipv4Of(g[6], g[7]) // 64:ff9b::a.b.c.d
  if (g[0] === 0x2002) return ipv4Of(g[1], g[2]) // 2002:aabb:ccdd::
  return null
}

/** True for an address no callback may reach: private, loopback, link-local, metadata, … */
function isBlockedAddress(address) {
  const family = net.isIP(address)
  if (family === 4) return BLOCKED.check(address, 'ipv4')
  if (family !== 6) return true // not an address at all: nothing to connect to
  if (BLOCKED.check(address.split('%')[0], 'ipv6')) return true
  const v4 = embeddedIPv4(address)
  return v4 !== null && BLOCKED.check(v4, 'ipv4')
}

/** The URL's host as compared with callbackAllowHosts: lower case, IPv6 without brackets. */
const hostKey = (hostname) => hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')

/** callbackAllowHosts as a Set of host keys, each spelled the way a URL normalizes it. */
function allowedHosts(list, configError) {
  if (list === undefined) return new Set()
  if (!Array.isArray(list) || !list.every((h) => typeof h === 'string' && h)) throw configError('callbackAllowHosts must be an array of host names or addresses')
  return new Set(
    list.map((host) => {
      try {
        return hostKey(new URL(`http://${net.isIP(host) === 6 ? `[${host}]` : host}/`).hostname)
      } catch {
        throw configError(`callbackAllowHosts: ${JSON.stringify(host).slice(0, 100)} is not a host name or address`)
      }
    }),
  )
}

/**
 * Why `url` may not be a callback without looking its name up (a literal address that is
 * blocked), or null. Names are checked when the callback is delivered.
 */
function literalRefusal(url, allowed) {
  const host = hostKey(url.hostname)
  if (allowed.has(host) || net.isIP(host) === 0) return null
  return isBlockedAddress(host) ? `callbackUrl points at a private, loopback, link-local or metadata address (${host})` : null
}

class RefusedCallbackTarget extends Error {
  constructor(message) {
    super(message)
    this.name = 'RefusedCallbackTarget'
    this.code = 'CALLBACK_TARGET_REFUSED'
  }
}

/**
 * The address to connect to for `url`: every address its name resolves to must be public,
 * unless the host is in `allowed`. Rejects with a RefusedCallbackTarget otherwise.
 */
async function resolveTarget(url, allowed, lookup = dns.promises.lookup) {
  const host = hostKey(url.hostname)
  const addresses = net.isIP(host) ? [{ address: host, family: net.isIP(host) }] : await lookup(host, { all: true, verbatim: true })
  if (addresses.length === 0) throw new RefusedCallbackTarget(`callback host ${host} has no address`)
  if (!allowed.has(host)) {
    const blocked = addresses.find(({ address }) => isBlockedAddress(address))
    if (blocked) throw new RefusedCallbackTarget(`callback host ${host} resolves to ${blocked.address}, a private, loopback, link-local or metadata address; add it to callbackAllowHosts to allow it`)
  }
  return addresses[0]
}

/**
 * POSTs `body` to `url` at the checked address (no redirects followed); resolves with the
 * response status. `lookup` (dns.promises.lookup's shape) is asked once, before connecting.
 */
async function postToCheckedTarget(url, { headers, body, signal, allowed, lookup }) {
  const target = await resolveTarget(url, allowed, lookup)
  const secure = url.protocol === 'https:'
  const host = hostKey(url.hostname)
  return new Promise((resolve, reject) => {
    const request = (secure ? https : http).request({
      method: 'POST',
      protocol: url.protocol,
      hostname: host,
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      headers: { ...headers, 'content-length': Buffer.byteLength(body) },
      // The connection goes to the address that was checked, whatever the name resolves to now.
      lookup: (_name, options, callback) =>
        options?.all ? callback(null, [{ address: target.address, family: target.family }]) : callback(null, target.address, target.family),
      servername: net.isIP(host) ? undefined : host,
      agent: false,
      signal,
    })
    request.once('error', reject)
    request.once('response', (response) => {
      response.resume()
      response.once('end', () => resolve(response.statusCode))
      response.once('error', reject)
    })
    request.end(body)
  })
}

module.exports = { allowedHosts, isBlockedAddress, literalRefusal, postToCheckedTarget, resolveTarget, RefusedCallbackTarget }
