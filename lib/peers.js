'use strict'
// The packages only some entry points use are optional peer dependencies: a core install
// (`npm install ferrogate`) does not pull them in. An entry point that needs them says which
// command installs them, when it is loaded, instead of failing later with MODULE_NOT_FOUND.

/** The install line for `packages`, as a user would type it. */
const installLine = (packages) => `npm install ${packages.join(' ')}`

class MissingPeerError extends Error {
  constructor(entry, missing) {
    super(`${entry} needs ${missing.join(' and ')}, which ${missing.length === 1 ? 'is' : 'are'} not installed: run \`${installLine(missing)}\``)
    this.name = 'MissingPeerError'
    this.code = 'CONFIG'
    this.missing = missing
    this.install = installLine(missing)
  }
}

/** Throws a MissingPeerError naming every one of `packages` that cannot be resolved from here. */
function requirePeers(entry, packages) {
  const missing = packages.filter((name) => {
    try {
      require.resolve(name)
      return false
    } catch (error) {
      if (error.code === 'MODULE_NOT_FOUND') return true
      throw error
    }
  })
  if (missing.length) throw new MissingPeerError(entry, missing)
}

/** `require(name)`, or a MissingPeerError saying how to install it (for a peer only one feature needs). */
function requirePeer(entry, name) {
  requirePeers(entry, [name])
  return require(name)
}

module.exports = { requirePeers, requirePeer, MissingPeerError }
