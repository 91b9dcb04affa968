"""How a host's substrate pools reach the scheduler: stats and traits.

The real and the fake driver both report through this module, so a
simulated host looks exactly like a real one to the scheduler.

Stats (``ComputeNode.stats``, the scheduler's ``HostState.stats``; values
are strings):

``substrate_host``
    ``"1"`` on every host running a substrate driver.
``substrate.<key>``
    Ready substrates of that key, as a decimal number (keys from
    ``nova_substrate.substrate_key``). Keys with a template but no ready
    copy report ``"0"``: an activation is still possible there, at the
    cost of copying the template first.
``substrate_memory_mb`` / ``substrate_budget_mb``
    What the pool holds and may hold.
``substrate_cache.<image id>``
    Bytes held by the host's boot working-set cache of that image; a
    positive value means the cache is warm.

Traits on the host's resource provider (placement):

``CUSTOM_SUBSTRATE_HOST``
    The host runs a substrate driver.
``CUSTOM_SUBSTRATE_<KEY>``
    The host holds at least one ready substrate of that key.
"""

HOST_STAT = 'substrate_host'
KEY_STAT_PREFIX = 'substrate.'
MEMORY_STAT = 'substrate_memory_mb'
CACHE_STAT_PREFIX = 'substrate_cache.'
BUDGET_STAT = 'substrate_budget_mb'

TRAIT_PREFIX = 'CUSTOM_SUBSTRATE_'
HOST_TRAIT = TRAIT_PREFIX + 'HOST'


def key_trait(key):
    return TRAIT_PREFIX + key.upper()


def pool_stats(ready_by_key, memory_mb, budget_mb):
    """The stats entries for a pool holding ready_by_key substrates."""
    stats = {HOST_STAT: '1', MEMORY_STAT: str(int(memory_mb)),
             BUDGET_STAT: str(int(budget_mb))}
    for key, ready in ready_by_key.items():
        stats[KEY_STAT_PREFIX + key] = str(int(ready))
    return stats


def cache_stats(bytes_by_image):
    """The stats entries for the host's warm boot caches."""
    return {CACHE_STAT_PREFIX + image_id: str(int(size))
            for image_id, size in bytes_by_image.items() if size > 0}


def ready_count(stats, key):
    """Ready substrates of one key in a host's stats (0 if none or junk)."""
    value = (stats or {}).get(KEY_STAT_PREFIX + key)
    if value is None:
        return 0
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def ready_from_stats(stats):
    """{key: ready substrates} from a host's stats (the scheduler's side)."""
    ready = {}
    for name, value in (stats or {}).items():
        if name.startswith(KEY_STAT_PREFIX):
            try:
                ready[name[len(KEY_STAT_PREFIX):]] = int(value)
            except (TypeError, ValueError):
                continue
    return ready


def cache_is_warm(stats, image_id):
    """Does a host's stats show a warm boot cache of image_id?"""
    if not image_id:
        return False
    try:
        return int((stats or {}).get(CACHE_STAT_PREFIX + image_id, 0)) > 0
    except (TypeError, ValueError):
        return False


def wanted_traits(ready_by_key):
    return {HOST_TRAIT} | {key_trait(k) for k, n in ready_by_key.items()
                           if n > 0}


def update_traits(provider_tree, nodename, ready_by_key):
    """Set the node's substrate traits; other traits are left as they are."""
    wanted = wanted_traits(ready_by_key)
    current = provider_tree.data(nodename).traits
    stale = {t for t in current if t.startswith(TRAIT_PREFIX)} - wanted
    if stale:
        provider_tree.remove_traits(nodename, *stale)
    provider_tree.add_traits(nodename, *wanted)
