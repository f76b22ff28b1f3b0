"""OpenID Connect: the portal as an OpenID provider for apps that cannot read the
gateway's header (`clients`: the registered applications; the protocol above them)."""
