'use strict'
// Stand-in for libsignal-node: any property access yields an inert function/object. Media code never calls it.
const inert = new Proxy(function () {}, { get: () => inert, apply: () => inert, construct: () => inert })
module.exports = inert
