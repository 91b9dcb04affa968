"""What the filter and the weigher know about one scheduling request.

Both read a host's substrates from its stats (``virt/reporting.py``) and
subtract what this request has already placed there: Nova schedules the
instances of a multi-create one after another on the same RequestSpec,
and a host's stats change only when its compute reports again. The
instances placed so far are seen through the hosts' ``num_io_ops``, which
the scheduler raises by one on the host it picked for each instance.
Should another request raise it meanwhile, a host counts as having given
one more substrate than it did: the error is on the side of asking less.
"""

from oslo_log import log as logging

from nova import objects

from nova_substrate import substrate_key
from nova_substrate.virt import reporting

LOG = logging.getLogger(__name__)

# Kept on the RequestSpec for the length of one request; not a field, so
# never saved or sent anywhere.
_STATE_ATTR = '_substrate_scheduling'


def _host_id(host_state):
    return (host_state.host, host_state.nodename)


class RequestState(object):
    """The substrate side of one RequestSpec, computed once per request."""

    def __init__(self, spec_obj):
        flavor = spec_obj.flavor
        self.wanted = substrate_key.wants_substrate(flavor)
        self.strict = self.wanted and not substrate_key.fallback_allowed(
            flavor)
        self.key = (substrate_key.substrate_key(spec_obj.image, flavor)
                    if self.wanted else None)
        self.image_id = spec_obj.image.id if 'image' in spec_obj and \
            spec_obj.image and 'id' in spec_obj.image else None
        self.new_build = _is_new_build(spec_obj)
        self.instance_uuid = None
        #: Instances of this request placed before the one now scheduled.
        self.placed = 0
        self.io_ops = {}
        self.taken = {}

    @classmethod
    def of(cls, spec_obj):
        """The request's state, advanced to the instance now scheduled."""
        state = getattr(spec_obj, _STATE_ATTR, None)
        if state is None:
            state = cls(spec_obj)
            setattr(spec_obj, _STATE_ATTR, state)
        return state

    def observe(self, spec_obj, host_states):
        """Account for the instance placed since the last call, if any."""
        uuid = spec_obj.instance_uuid if 'instance_uuid' in spec_obj \
            else None
        if uuid == self.instance_uuid and self.io_ops:
            return      # the weigher, after the filter, for one instance
        if self.io_ops:
            self.placed += 1
        for host_state in host_states:
            hid = _host_id(host_state)
            before = self.io_ops.get(hid)
            if before is not None and host_state.num_io_ops > before:
                self.taken[hid] = self.taken.get(hid, 0) + 1
        self.io_ops = {_host_id(h): h.num_io_ops for h in host_states}
        self.instance_uuid = uuid

    def available(self, host_state):
        """Ready substrates of the request's key the host can still give."""
        # One lookup per host: this runs for every candidate of every
        # request.
        ready = reporting.ready_count(host_state.stats, self.key)
        if ready and self.taken:
            ready -= self.taken.get(_host_id(host_state), 0)
        return ready

    def warm_cache(self, host_state):
        return reporting.cache_is_warm(host_state.stats, self.image_id)


def _is_new_build(spec_obj):
    """Is this the first scheduling of new instances (not a move)?

    A new instance has a BuildRequest until it is scheduled; an instance
    that is migrated, resized, unshelved or evacuated has none.
    """
    context = getattr(spec_obj, '_context', None)
    if context is None or 'instance_uuid' not in spec_obj:
        return True
    try:
        objects.BuildRequest.get_by_instance_uuid(context,
                                                  spec_obj.instance_uuid)
    except Exception as e:   # BuildRequestNotFound, or no API database
        LOG.debug('No build request for %s (%s): not a new build',
                  spec_obj.instance_uuid, type(e).__name__)
        return False
    return True
