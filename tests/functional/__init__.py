# Nova's harness picks its concurrency model (eventlet monkey patching or
# native threads) when nova.tests is first imported; that has to happen
# before anything else imports the modules eventlet patches.
import nova.tests  # noqa: F401
