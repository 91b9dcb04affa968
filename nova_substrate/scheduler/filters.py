"""SubstrateFilter: send substrate flavors to hosts that hold a substrate.

Enable it with its class path in ``[filter_scheduler] available_filters``
(next to ``nova.scheduler.filters.all_filters``) and its name,
``SubstrateFilter``, in ``enabled_filters``.

For a flavor with ``substrate:enabled=true`` it keeps the hosts that hold
a ready substrate of the request's key (image and flavor,
``substrate_key.py``) that this request has not used yet. When no
candidate host holds one:

- ``substrate:fallback`` true (the default): every candidate is kept and
  the instance boots normally where the other filters and the weighers
  send it;
- ``substrate:fallback=false``: none is kept, and the instance goes to
  ERROR with a fault saying that no host holds a substrate. In a
  multi-create whose earlier instances took the substrates there were,
  the request fails as Nova fails one it has too few hosts for ("There
  are not enough hosts available"), so that Nova releases the placement
  claims of those earlier instances; the scheduler logs the reason.

Operations other than a new build:

- rebuild: the host is fixed; nothing is filtered (the driver activates
  the rebuilt instance if its host holds a substrate, else boots it);
- resize, cold and live migration, evacuation, unshelve: the instance
  already exists. Hosts holding a substrate of the key are kept when some
  candidate holds one (an evacuation spawns on its new host from the
  image), every candidate otherwise; ``substrate:fallback=false`` is not
  applied, so a move never fails for want of a substrate. (An unshelve
  boots the shelved snapshot, a different image, so no host holds one.)

Flavors without substrate extra specs pass untouched.
"""

from nova import exception
from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils
from oslo_log import log as logging

from nova_substrate.scheduler import request

LOG = logging.getLogger(__name__)


class SubstrateFilter(filters.BaseHostFilter):

    # Runs for every instance of a multi-create: each takes a substrate.
    run_filter_once_per_request = False

    def filter_all(self, filter_obj_list, spec_obj):
        hosts = list(filter_obj_list)
        if 'flavor' not in spec_obj or spec_obj.flavor is None:
            return hosts
        state = request.RequestState.of(spec_obj)
        if not state.wanted or scheduler_utils.request_is_rebuild(spec_obj):
            return hosts
        state.observe(spec_obj, hosts)
        holding = [h for h in hosts if state.available(h) > 0]
        if holding:
            return holding
        if state.strict and state.new_build:
            reason = ('No host holds a substrate for image %s with flavor '
                      '%s (substrate key %s), and the flavor has '
                      'substrate:fallback=false.'
                      % (state.image_id, spec_obj.flavor.name, state.key))
            if state.placed:
                # Nova releases the claims of the instances it placed so
                # far only when a filter leaves no host; raising here
                # would leave their allocations in placement.
                LOG.warning('Instance %d of the request: %s',
                            state.placed + 1, reason)
                return []
            raise exception.NoValidHost(reason=reason)
        return hosts

    def host_passes(self, host_state, spec_obj):
        # filter_all decides; this is for callers that ask host by host.
        return bool(self.filter_all([host_state], spec_obj))
