"""Nova's in-process cloud with simulated substrate hosts, no hypervisor.

Every nova-compute runs ``substrate.FakeSubstrateDriver``; a test starts
them itself with start_substrate_compute(), each with its own ``[substrate]
pools`` (the driver reads the option when it is created).
"""

import os

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests.functional import integrated_helpers
from sqlalchemy import exc as sqla_exc

from nova_substrate import notifications
from nova_substrate import substrate_key
from nova_substrate.testing import libvirt_cloud

#: Within MediumFakeDriver's budget of memory for the substrate pools.
BUDGET_MB = 1024


class FakeSubstrateCloudTestCase(integrated_helpers._IntegratedTestBase):

    # networks='none' needs 2.37, a forced host 2.74, extra spec
    # validation 2.86.
    microversion = 'latest'
    REQUIRES_LOCKING = False

    def _setup_compute_service(self):
        # Started by the test once its flavors exist, one per host.
        return None

    def _setup_services(self):
        self.flags(compute_driver='substrate.FakeSubstrateDriver')
        # The harness looks for api-paste.ini under its state_path; pip
        # installs it under the environment's prefix.
        self.flags(api_paste_config=libvirt_cloud._api_paste_config(),
                   group='wsgi')
        self.log_dir = self.useFixture(fixtures.TempDir()).path
        self.flags(activation_log=os.path.join(self.log_dir,
                                               'activations.jsonl'),
                   memory_budget_mb=BUDGET_MB, group='substrate')
        # oslo.messaging's in-memory driver: the test reads what the
        # driver sent.
        self.flags(driver=['test'], group='oslo_messaging_notifications')
        # Notifiers are cached per host and transport for the process;
        # this test's start empty.
        self.useFixture(fixtures.MockPatchObject(notifications,
                                                 '_notifiers', {}))
        # WarningsFixture turns SQLAlchemy deprecations raised from nova
        # into errors, and Nova 34's instance queries still use noload(),
        # deprecated in SQLAlchemy 2.1.
        self.useFixture(fixtures.WarningsFilter([
            {'action': 'ignore', 'message': 'The noload',
             'category': sqla_exc.SADeprecationWarning}]))
        super()._setup_services()

    def start_substrate_compute(self, host, pools):
        """A nova-compute on host with these [substrate] pools lines."""
        self.flags(pools=pools, group='substrate')
        return self._start_compute(host)

    @staticmethod
    def pool(image_id, flavor_id, count):
        return '%s:%s:%d' % (image_id, flavor_id, count)

    def expected_key(self, image_id, flavor_id):
        """The key as the scheduler computes it from a request."""
        ctx = nova_context.get_admin_context()
        image = self.glance.show(ctx, image_id)
        flavor = objects.Flavor.get_by_flavor_id(ctx, flavor_id)
        return substrate_key.substrate_key(
            objects.ImageMeta.from_dict(image), flavor)
