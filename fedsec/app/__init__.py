"""fedsec's app wiring: the round loop, the Flower ServerApp and ClientApp, the inline Grid.

It composes the registered methods (``fedsec.registry``) into a run: it builds
whatever the config selects and calls the extension points the plug-ins
registered. The server side names no method; the ClientApp runs fedsec's client
(``clients.build_client``: the honest client with the attack and defense pieces the
config selects) and its two Mods (model poisoning, fault injection). The core
(``fedsec`` outside this package) imports neither.
"""
