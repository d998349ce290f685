package manifests

// RootVersionHeader is the response header with which fwrepo answers a
// request for timestamp.json (the image repository's, and a device's
// director timestamp): the newest root version it serves. It is a hint,
// not signed: the agent then asks for root N+1 only when the hint is above
// the root it trusts, when it is missing, or after a day without asking
// (agent/tufclient). Withholding a new root this way is no stronger than
// answering the probe with a 404, which TUF cannot authenticate either.
const RootVersionHeader = "Fwctl-Root-Version"
