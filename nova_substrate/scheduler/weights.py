"""SubstrateWeigher: substrates first, then warm image caches, then the rest.

Add ``nova_substrate.scheduler.weights.SubstrateWeigher`` to
``[filter_scheduler] weight_classes``. For a substrate flavor a host
weighs ``2 + n`` with n ready substrates of the request's key that this
request has not used, 1 with a warm boot working-set cache for the
request's image, 0 otherwise; for other flavors a warm cache weighs 1.
Nova normalizes each weigher's weights over the candidates (the best
gets 1, the worst 0) and multiplies them by ``[substrate]
weight_multiplier``, which a host aggregate overrides with the metadata
key ``substrate_weight_multiplier``, as for Nova's own weighers. The
default, 10, is larger than the most Nova's default weighers can add
together (about 5), so between the best and the worst candidate by this
weigher, this weigher decides; between hosts whose weights are close (one
with 3 ready copies and one with 2 among hosts holding up to 64), Nova's
own weighers can still tip the choice.
"""

from nova.scheduler import utils as scheduler_utils
from nova.scheduler import weights

from nova_substrate import conf as substrate_conf
from nova_substrate.scheduler import request

CONF = substrate_conf.CONF
AGGREGATE_KEY = 'substrate_weight_multiplier'


class SubstrateWeigher(weights.BaseHostWeigher):

    minval = 0
    _multiplier = None

    def weight_multiplier(self, host_state):
        default = (self._multiplier if self._multiplier is not None
                   else CONF.substrate.weight_multiplier)
        if not host_state.aggregates:
            return default
        return scheduler_utils.get_weight_multiplier(
            host_state, AGGREGATE_KEY, default)

    def weigh_objects(self, weighed_obj_list, spec_obj):
        # Read once per request, not once per host: Nova asks for each
        # host's multiplier after this.
        self._multiplier = CONF.substrate.weight_multiplier
        hosts = [weighed.obj for weighed in weighed_obj_list]
        if 'flavor' not in spec_obj or spec_obj.flavor is None:
            return [0] * len(hosts)
        state = request.RequestState.of(spec_obj)
        if state.wanted:
            state.observe(spec_obj, hosts)
        # Every candidate of every request passes here: one pass, no
        # call per host.
        return [self._weight(state, host) for host in hosts]

    def _weigh_object(self, host_state, spec_obj):
        if 'flavor' not in spec_obj or spec_obj.flavor is None:
            return 0
        return self._weight(request.RequestState.of(spec_obj), host_state)

    @staticmethod
    def _weight(state, host_state):
        if state.wanted:
            ready = state.available(host_state)
            if ready > 0:
                return 2 + ready
        return 1 if state.warm_cache(host_state) else 0
