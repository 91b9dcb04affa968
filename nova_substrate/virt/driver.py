"""SubstrateDriver: Nova's libvirt driver, activating instead of booting.

An instance whose flavor has ``substrate:enabled=true`` goes through
LibvirtDriver.spawn() unchanged (disks, console log, the domain XML, VIF
plugging, Neutron's events, the wait for RUNNING, the recorded image
defaults), with one difference: where LibvirtDriver would define and
start the domain, this driver activates a clone of a docked substrate
into exactly that domain. The clone takes the name, uuid, metadata,
SMBIOS data, disks and console log of the XML LibvirtDriver generated,
gets the XML's NICs hot-plugged and its identity handed over, and is
defined with libvirt like any instance. If the host holds no matching
substrate, or anything in the activation fails, the half-made clone is
removed and the instance boots the ordinary way from the same XML.

Afterwards the instance is ordinary: its disk is streamed off the
substrate's layer onto Nova's cached base image in the background, so
its chain is the one a booted instance has.

With ``[substrate_cache] enabled``, booted instances of raw and qcow2
images get their root disk on the host's boot working-set cache of the
image (virt/boot_cache.py) instead of on a whole copy of it in _base.
"""

import contextlib
import os
import shutil
import threading
import time

import libvirt
from oslo_log import log as logging
from oslo_utils import excutils

from nova import context as nova_context
from nova import exception as nova_exception
from nova.image import glance
from nova.network import model as network_model
from nova import objects
from nova import utils as nova_utils
from nova.virt import configdrive
from nova.virt import driver as virt_driver
from nova.virt import hardware
from nova.virt.libvirt import blockinfo
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import utils as libvirt_utils

from nova_substrate import conf as substrate_conf
from nova_substrate.engine import activate
from nova_substrate.engine import build
from nova_substrate.engine import chain
from nova_substrate.engine import domainxml
from nova_substrate.engine import exception as engine_exception
from nova_substrate.engine import pool as substrate_pool
from nova_substrate.engine import qemuimg
from nova_substrate.engine import settings as engine_settings
from nova_substrate import notifications
from nova_substrate import substrate_key
from nova_substrate.virt import boot_cache
from nova_substrate.virt import clone_disks
from nova_substrate.virt import imagecache
from nova_substrate.virt import keeper
from nova_substrate.virt import pools
from nova_substrate.virt import reporting
from nova_substrate.virt import template_instance
from nova_substrate.virt import tenant_data

LOG = logging.getLogger(__name__)
CONF = substrate_conf.CONF

# Streaming a layer (what the substrate's boot wrote) into a clone's disk
# moves megabytes; this bounds a stuck block job.
FLATTEN_TIMEOUT_S = 600.0
# Memory of a pre-warm's warm-up boot, unless the image asks for more.
WARMUP_MEMORY_MB = 512


class ActivationPlan(object):
    """One spawn's activation: planned, then tried at most once.

    It keeps what spawn() was given for the instance's own data
    (injected files, admin password, network info): a clone gets the
    same data a config drive would carry.
    """

    def __init__(self, key, source, injected_files=None,
                 admin_password=None, network_info=None):
        self.key = key
        self.source = source
        self.injected_files = injected_files
        self.admin_password = admin_password
        self.network_info = network_info
        self.tried = False
        self.clone = None
        self.error = None
        self.started = time.monotonic()
        #: Seconds from the start of spawn() to each step of the driver's.
        self.marks = {}

    def mark(self, name):
        self.marks[name] = round(time.monotonic() - self.started, 4)

    def timings(self):
        """The activation's phases, then the driver's steps around it."""
        return dict(self.clone.timings, spawn=dict(self.marks))


class SubstrateDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        # A bad option stops the service here, naming the option.
        substrate_conf.validate(CONF)
        super().__init__(virtapi, read_only)
        self.settings = engine_settings.EngineSettings.from_conf(CONF)
        self.pool = substrate_pool.SubstratePool(
            CONF.substrate.pool_path, CONF.substrate.layer_path,
            CONF.substrate.memory_budget_mb * 2 ** 20)
        self.pool_targets = pools.PoolTargets.from_conf(CONF)
        self.activation_log = notifications.ActivationLog(
            CONF.substrate.activation_log)
        self.image_cache_manager = imagecache.SubstrateImageCacheManager(
            self.pool)
        self.keeper = keeper.PoolKeeper(
            self.pool, self.pool_targets, self, CONF.substrate.upkeep_interval,
            nova_context.get_admin_context)
        self.layer_release = clone_disks.LayerRelease(
            self.pool, self._host.get_connection, CONF.instances_path,
            FLATTEN_TIMEOUT_S)
        self._plans = {}
        self._warmup_instances = set()
        self._image_api = glance.API()
        self.boot_caches = boot_cache.BootCaches(
            CONF, self._image_api, self._host.get_connection)

    # -- service life ------------------------------------------------------

    def init_host(self, host):
        super().init_host(host)
        self.pool.recover()
        self.layer_release.resume()
        self.boot_caches.start()
        self.keeper.start()

    def cleanup_host(self, host):
        # The keeper stops after its current step; a build in progress is
        # aborted rather than waited for (it would hold the service's
        # shutdown for the length of a boot), and cleans up after itself.
        # Nothing here may block: nova-compute shuts its thread pools down
        # right after this returns.
        self.keeper.stop()
        self.boot_caches.stop()
        threading.Thread(target=build.abort_builds, daemon=True,
                         name='substrate-abort-builds',
                         args=(self._host.get_connection(),
                               self.pool.layer_root)).start()
        super().cleanup_host(host)

    def list_instances(self):
        return [name for name in super().list_instances()
                if not name.startswith(build.DOMAIN_PREFIX)]

    def list_instance_uuids(self):
        # Build domains run under random uuids and are nobody's instances:
        # a compute that counted them would refuse to start as a new host.
        return [dom.UUIDString()
                for dom in self._host.list_instance_domains(
                    only_running=False)
                if not dom.name().startswith(build.DOMAIN_PREFIX)]

    # -- spawn -------------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        flavor = instance.flavor
        if not substrate_key.wants_substrate(flavor):
            return super().spawn(context, instance, image_meta,
                                 injected_files, admin_password, allocations,
                                 network_info, block_device_info, power_on,
                                 accel_info)
        started = time.monotonic()
        source = pools.Source(
            image_meta, flavor, instance.kernel_id or None,
            instance.ramdisk_id or None,
            {k: v for k, v in instance.system_metadata.items()
             if k.startswith(nova_utils.SM_IMAGE_PROP_PREFIX)})
        reason = self._ineligible(instance, image_meta, block_device_info,
                                  allocations, accel_info, power_on)
        plan = None
        if reason is None:
            self.pool_targets.record_request(source)
            template = self.pool.get(source.key)
            if template is None:
                reason = 'this host holds no substrate %s' % source.key
            else:
                reason = (self._template_mismatch(template, instance) or
                          tenant_data.unserved(template.meta, instance,
                                               network_info))
            if reason is None:
                plan = self._plans[instance.uuid] = ActivationPlan(
                    source.key, source, injected_files, admin_password,
                    network_info)
        try:
            super().spawn(context, instance, image_meta, injected_files,
                          admin_password, allocations, network_info,
                          block_device_info, power_on, accel_info)
        finally:
            self._plans.pop(instance.uuid, None)
            self.keeper.wake()
        if plan is not None:
            plan.mark('spawned_s')
        self._report_spawn(context, instance, source.key, plan, reason,
                           time.monotonic() - started)

    def _ineligible(self, instance, image_meta, block_device_info,
                    allocations, accel_info, power_on):
        """Why this instance cannot be activated, or None."""
        if not power_on:
            return 'the instance is not to be powered on'
        if CONF.libvirt.images_type not in ('default', 'qcow2') or \
                not CONF.use_cow_images:
            return ('substrates need qcow2 instance disks ([libvirt] '
                    'images_type, [DEFAULT] use_cow_images)')
        if self._is_booted_from_volume(block_device_info) or \
                virt_driver.block_device_info_get_mapping(
                    block_device_info):
            return 'the instance has volumes'
        if instance.flavor.ephemeral_gb or instance.flavor.swap or \
                virt_driver.block_device_info_get_ephemerals(
                    block_device_info):
            return 'the flavor has ephemeral or swap disks'
        if accel_info or (instance.pci_requests and
                          instance.pci_requests.requests):
            return 'the instance has PCI or accelerator devices'
        if self._allocate_mdevs(allocations):
            return 'the instance has mediated devices'
        if hardware.get_vtpm_constraint(instance.flavor, image_meta):
            return 'the instance has a vTPM'
        if not image_meta.properties.get('hw_qemu_guest_agent', False):
            return ('the image does not declare a guest agent '
                    '(hw_qemu_guest_agent=yes)')
        return None

    @staticmethod
    def _template_mismatch(template, instance):
        labels = template.meta.get('labels', {})
        wants_drive = bool(configdrive.required_by(instance))
        if labels.get('config_drive', False) != wants_drive:
            return ('the substrate %s config drive and the instance %s'
                    % ('has a' if labels.get('config_drive') else 'has no',
                       'needs one' if wants_drive else 'has none'))
        return None

    def _create_guest(self, context, xml, instance, power_on=True,
                      pause=False, post_xml_callback=None):
        plan = self._plans.get(instance.uuid)
        if plan is None or plan.tried or not power_on:
            return super()._create_guest(context, xml, instance,
                                         power_on=power_on, pause=pause,
                                         post_xml_callback=post_xml_callback)
        plan.tried = True
        plan.mark('xml_s')
        # Defined first, as LibvirtDriver does: the config drive is made
        # from the defined domain's devices, and the restore then takes
        # over the definition.
        libvirt_guest.Guest.create(xml, self._host)
        if post_xml_callback is not None:
            post_xml_callback()
        plan.mark('defined_s')
        try:
            guest = self._activate(instance, xml, plan)
            plan.mark('activated_s')
        except Exception as e:
            plan.error = e
            LOG.warning('Activation from substrate %s failed, booting the '
                        'instance instead: %s', plan.key, e,
                        instance=instance)
            return super()._create_guest(context, xml, instance,
                                         power_on=power_on, pause=pause)
        if pause:
            # LibvirtDriver resumes it once Neutron reports the VIFs.
            guest.pause()
        return guest

    def _activate(self, instance, xml, plan):
        """A clone of plan.key's substrate running as the instance's domain.

        Raises on any failure, having left the instance's files as
        LibvirtDriver made them and no domain behind.
        """
        template = self.pool.get(plan.key)
        if template is None:
            raise engine_exception.NoSubstrate(
                'substrate %s was evicted' % plan.key)
        disk = os.path.join(libvirt_utils.get_instance_path(instance), 'disk')
        disk_info = qemuimg.info(disk)
        if disk_info.get('full-backing-filename') != template.meta['base'] \
                or disk_info['virtual-size'] != template.meta['disk_bytes']:
            raise engine_exception.ActivationError(
                'the instance disk (on %s, %d bytes) does not match the '
                'substrate (on %s, %d bytes)' % (
                    disk_info.get('full-backing-filename'),
                    disk_info['virtual-size'], template.meta['base'],
                    template.meta['disk_bytes']))
        # LibvirtDriver's own disk stays beside the clone's until the
        # clone runs: a fallback boots from it.
        booted_disk = disk + '.boot'
        os.rename(disk, booted_disk)
        try:
            spec = activate.CloneSpec(
                name=instance.name, uuid=instance.uuid, overlay_path=disk,
                vcpus=instance.flavor.vcpus,
                memory_mb=instance.flavor.memory_mb,
                hostname=instance.hostname,
                nics=domainxml.interfaces(xml),
                instance_data=tenant_data.instance_data(
                    instance, plan.injected_files,
                    plan.admin_password, plan.network_info),
                owner_xml=xml)
            conn = self._host.get_connection()
            clone = activate.activate_clone(conn, self.pool, plan.key, spec,
                                            self.settings,
                                            copy_if_empty=True)
            try:
                # Persistent, like every domain LibvirtDriver makes.
                conn.defineXML(clone.domain.XMLDesc(
                    libvirt.VIR_DOMAIN_XML_SECURE |
                    libvirt.VIR_DOMAIN_XML_MIGRATABLE))
            except Exception:
                with excutils.save_and_reraise_exception():
                    activate.destroy_clone(self.pool, clone)
        except Exception:
            with excutils.save_and_reraise_exception():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(disk)
                os.rename(booted_disk, disk)
        os.unlink(booted_disk)
        plan.clone = clone
        self.layer_release.start(instance.uuid, template.meta['layer_id'])
        return libvirt_guest.Guest(clone.domain)

    def _report_spawn(self, context, instance, key, plan, reason, seconds):
        activated = plan is not None and plan.clone is not None
        notifications.report_spawn(
            context, self.activation_log, instance, key, seconds,
            timings=plan.timings() if activated else None,
            error=plan.error if plan is not None else None,
            reason=reason)

    # -- the clone's disk chain (clone_disks.py) ----------------------------

    def layer_user_alive(self, domain_uuid):
        return self.layer_release.user_alive(domain_uuid)

    # -- the root disk on a boot working-set cache (boot_cache.py) -----------

    def _create_and_inject_local_root(self, context, instance, disk_mapping,
                                      booted_from_volume, suffix, disk_images,
                                      injection_info, fallback_from_host):
        if self._root_disk_on_cache(context, instance, disk_mapping,
                                    booted_from_volume, suffix, disk_images,
                                    injection_info):
            return True
        return super()._create_and_inject_local_root(
            context, instance, disk_mapping, booted_from_volume, suffix,
            disk_images, injection_info, fallback_from_host)

    def _root_disk_on_cache(self, context, instance, disk_mapping,
                            booted_from_volume, suffix, disk_images,
                            injection_info):
        if not self.boot_caches.enabled:
            return False
        reason = self.boot_caches.refusal(instance, booted_from_volume,
                                          suffix, CONF.libvirt.images_type)
        if (reason is None and instance.user_id == template_instance.OWNER
                and instance.uuid not in self._warmup_instances):
            # Substrates are built on _base, where clones are streamed to.
            reason = 'a substrate build'
        if reason is None and injection_info is not None and (
                CONF.libvirt.inject_partition != -2 and
                not configdrive.required_by(instance)):
            reason = 'file injection needs a local root disk'
        if reason is not None:
            LOG.debug('Image cache not used: %s', reason, instance=instance)
            return False
        backend = self.image_backend.by_name(
            instance, 'disk', disk_info_mapping=disk_mapping['disk'])
        if backend.exists():
            return False
        size = instance.flavor.root_gb * 2 ** 30 or None
        return self.boot_caches.make_root_disk(
            context, instance, disk_images['image_id'], backend.path,
            size) is not None

    def _leave_boot_cache(self, instance):
        """Stream the image into the disk, off the host's cache.

        A disk moving to another host cannot take this host's cache with
        it: it becomes complete (no backing file) and the lease ends.
        """
        if not self.boot_caches.enabled or not self.boot_caches.manager.\
                leased_to(instance.uuid):
            return
        disk_path = os.path.join(libvirt_utils.get_instance_path(instance),
                                 'disk')
        dom = chain.domain_or_none(self._host.get_connection(),
                                   instance.uuid)
        chain.flatten(dom, disk_path, None, 'qcow2', FLATTEN_TIMEOUT_S)
        self.boot_caches.release(instance.uuid)

    def _create_images_and_backing(self, context, instance, instance_dir,
                                   disk_info, fallback_from_host=None):
        """Recreate missing backing files; a cache's link is not Nova's.

        Hard reboot, host boot resume and migration recreate each disk's
        backing file in _base from its image. A disk on an image cache
        has the cache's link there instead, which the cache (served again
        if need be) provides; fetching the image would only waste a whole
        download under the link's name.
        """
        if self.boot_caches.enabled and disk_info:
            on_cache = [info for info in disk_info
                        if info.get('backing_file') and
                        self.boot_caches.is_link(_backing_or_none(
                            os.path.join(instance_dir,
                                         os.path.basename(info['path']))))]
            if on_cache:
                self.boot_caches.manager.resume()
                disk_info = [i for i in disk_info if i not in on_cache]
        return super()._create_images_and_backing(
            context, instance, instance_dir, disk_info, fallback_from_host)

    def _live_snapshot(self, context, instance, guest, disk_path, out_path,
                       source_format, image_format, image_meta):
        if not self.boot_caches.is_link(
                libvirt_utils.get_disk_backing_file(
                    disk_path, format=source_format, basename=False)):
            return super()._live_snapshot(
                context, instance, guest, disk_path, out_path,
                source_format, image_format, image_meta)
        self._live_snapshot_on_cache(context, instance, guest, disk_path,
                                     out_path, image_format, image_meta)

    def _live_snapshot_on_cache(self, context, instance, guest, disk_path,
                                out_path, image_format, image_meta):
        """LibvirtDriver's live snapshot, for a disk on an image cache.

        The steps are LibvirtDriver's: a shallow block copy of the disk
        into a delta on the same backing file, then the delta converted
        to a complete image. Only the delta is made differently: Nova
        refuses to create an image on a backing file that itself has a
        backing file, and the cache's link has one by design (the
        cache's export).
        """
        dev = guest.get_block_device(disk_path)
        xml = guest.get_xml_desc(dump_inactive=True, dump_sensitive=True)
        try:
            dev.abort_job()
        except Exception:
            pass
        disk = qemuimg.info(disk_path)
        disk_delta = out_path + '.delta'
        # The delta reads the image through the cache without copying
        # into it: a snapshot reads the whole image, not a boot's blocks.
        qemuimg.create_overlay(
            disk_delta, self.boot_caches.bulk_link_of(
                disk['full-backing-filename']),
            'qcow2', disk['virtual-size'])
        try:
            # A block copy cannot run on a persistent domain; it is defined
            # again below whatever happens.
            if guest.has_persistent_configuration():
                self._delete_guest_configuration(guest, keep_vtpm=True,
                                                 keep_nvram=True)
            dev.rebase(disk_delta, copy=True, reuse_ext=True, shallow=True)
            while not dev.is_job_complete():
                time.sleep(0.5)
        finally:
            quiesced = False
            try:
                self.quiesce(context, instance, image_meta)
                quiesced = True
            except nova_exception.NovaException as err:
                LOG.info('Skipping quiescing instance: %s.', err,
                         instance=instance)
            dev.abort_job()
            self._host.write_instance_config(xml)
            if quiesced:
                self.unquiesce(context, instance, image_meta)
        try:
            libvirt_utils.extract_snapshot(disk_delta, 'qcow2', out_path,
                                           image_format)
        finally:
            os.unlink(disk_delta)

    def manage_image_cache(self, context, all_instances):
        super().manage_image_cache(context, all_instances)
        self.boot_caches.manage(context, {i.uuid for i in all_instances
                                          if i.host == CONF.host})

    def snapshot(self, context, instance, image_id, update_task_state):
        self.layer_release.finish(instance.uuid)
        return super().snapshot(context, instance, image_id,
                                update_task_state)

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        self.layer_release.finish(instance.uuid)
        self._leave_boot_cache(instance)
        return super().migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info,
            block_device_info, timeout, retry_interval)

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        self.layer_release.finish(instance.uuid)
        self._leave_boot_cache(instance)
        return super().live_migration(context, instance, dest, post_method,
                                      recover_method, block_migration,
                                      migrate_data)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        super().cleanup(context, instance, network_info, block_device_info,
                        destroy_disks, migrate_data, destroy_vifs,
                        destroy_secrets)
        if destroy_disks:
            self.layer_release.forget(instance.uuid)
            self.boot_caches.release(instance.uuid)

    # -- reporting ---------------------------------------------------------

    def ready_by_key(self):
        return {t.key: self.pool.ready_count(t.key)
                for t in self.pool.templates()}

    def get_available_resource(self, nodename):
        data = super().get_available_resource(nodename)
        data.setdefault('stats', {}).update(reporting.pool_stats(
            self.ready_by_key(), self.pool.usage_bytes() / 2 ** 20,
            CONF.substrate.memory_budget_mb))
        data['stats'].update(reporting.cache_stats(
            self.boot_caches.warm_images()))
        return data

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename, allocations)
        reporting.update_traits(provider_tree, nodename, self.ready_by_key())

    # -- pre-warming -------------------------------------------------------

    def cache_image(self, context, image_id):
        """Pre-warm the image: its boot cache, its substrates.

        With image caches, the image's cache is warmed and the whole image
        is fetched into _base only when substrates are configured for it
        (they are built on _base) or when the cache cannot serve it.
        """
        configured_pools = self.pool_targets.for_image(image_id)
        warmed = self._prewarm_boot_cache(context, image_id)
        if warmed and not configured_pools:
            return True
        fetched = super().cache_image(context, image_id)
        for configured in configured_pools:
            source = configured.source or self.resolve(context, configured)
            if source is None:
                continue
            self.pool_targets.learn(source)
            target = pools.Target(source.key, source, configured.count,
                                  pools.CONFIG)
            if not self.keeper.ensure(context, target, retry_failed=True):
                raise nova_exception.NovaException(
                    'building the substrate %s for image %s failed (see the '
                    'compute log)' % (source.key, image_id))
        for target in self.pool_targets.targets():
            if target.source.image_meta.id == image_id:
                self.keeper.ensure(context, target, retry_failed=True)
        return fetched

    def _prewarm_boot_cache(self, context, image_id):
        if not self.boot_caches.enabled or not CONF.substrate_cache.remote_url:
            return False
        try:
            done = self.boot_caches.prewarm(context, image_id,
                                            self._warmup_domain)
        except engine_exception.SubstrateError as e:
            LOG.warning('Image cache of %s not warmed, fetching it into '
                        '_base: %s', image_id, e)
            return False
        LOG.info('Image cache of %s warmed: %s', image_id, done)
        return True

    @contextlib.contextmanager
    def _warmup_domain(self, image):
        """The domain XML of a warm-up boot: the image's smallest instance.

        Its files (kernel and ramdisk of AMI-style images, the root disk
        on the cache) exist until the warm-up is over.
        """
        meta = objects.ImageMeta.from_dict(image)
        props = image.get('properties', {})
        flavor = objects.Flavor(
            id=0, flavorid='substrate-warmup', name='substrate-warmup',
            memory_mb=max(meta.min_ram or 0, WARMUP_MEMORY_MB), vcpus=1,
            root_gb=meta.min_disk or 0, ephemeral_gb=0, swap=0,
            extra_specs={}, rxtx_factor=1.0, vcpu_weight=0, disabled=False,
            is_public=True, description=None)
        source = pools.Source(
            meta, flavor, props.get('kernel_id'), props.get('ramdisk_id'),
            nova_utils.get_system_metadata_from_image(image, flavor))
        context = nova_context.get_admin_context()
        instance = template_instance.make(context, source, CONF.host,
                                          self._host.get_hostname())
        instance_dir = libvirt_utils.get_instance_path(instance)
        self._warmup_instances.add(instance.uuid)
        try:
            disk_info = blockinfo.get_disk_info(CONF.libvirt.virt_type,
                                                instance, meta)
            self._create_image(context, instance, disk_info['mapping'])
            yield self._get_guest_xml(context, instance,
                                      network_model.NetworkInfo(),
                                      disk_info, meta)
        finally:
            self._warmup_instances.discard(instance.uuid)
            shutil.rmtree(instance_dir, ignore_errors=True)
            self.boot_caches.release(instance.uuid)

    # -- building (the pool keeper's builder) --------------------------------

    def resolve(self, context, configured):
        """The Source of a configured pool, from Glance and the flavors."""
        image = self._image_api.get(context, configured.image_id)
        try:
            flavor = objects.Flavor.get_by_flavor_id(context,
                                                     configured.flavor)
        except nova_exception.FlavorNotFound:
            flavor = objects.Flavor.get_by_name(context, configured.flavor)
        if not substrate_key.wants_substrate(flavor):
            LOG.warning('[substrate] pools names flavor %s, which lacks '
                        '%s=true: no instance would be activated from that '
                        'pool', configured.flavor, substrate_key.ENABLED)
            return None
        props = image.get('properties', {})
        image_meta = objects.ImageMeta.from_dict(image)
        if not image_meta.properties.get('hw_qemu_guest_agent', False):
            LOG.warning('[substrate] pools names image %s, which does not '
                        'declare a guest agent (hw_qemu_guest_agent=yes): '
                        'no substrate can be built of it',
                        configured.image_id)
            return None
        return pools.Source(
            image_meta, flavor,
            props.get('kernel_id'), props.get('ramdisk_id'),
            nova_utils.get_system_metadata_from_image(image, flavor))

    def build(self, context, target):
        """Build and dock target's substrate from a template instance."""
        source = target.source
        instance = template_instance.make(context, source, CONF.host,
                                          self._host.get_hostname())
        image_meta = source.image_meta
        instance_dir = libvirt_utils.get_instance_path(instance)
        try:
            disk_info = blockinfo.get_disk_info(CONF.libvirt.virt_type,
                                                instance, image_meta)
            self._create_image(context, instance, disk_info['mapping'])
            config_drive = bool(configdrive.required_by(instance))
            if config_drive:
                # A placeholder medium: clones get their own instance's.
                open(os.path.join(instance_dir, 'disk.config'), 'wb').close()
            xml = self._get_guest_xml(context, instance,
                                      network_model.NetworkInfo(), disk_info,
                                      image_meta)
            disk = qemuimg.info(os.path.join(instance_dir, 'disk'))
            labels = {
                'image_id': image_meta.id,
                'image': substrate_key.image_document(image_meta),
                'flavor_id': source.flavor.flavorid,
                'flavor_name': source.flavor.name,
                'kernel_id': source.kernel_id,
                'ramdisk_id': source.ramdisk_id,
                'config_drive': config_drive,
            }
            spec = build.BuildSpec(
                key=target.key,
                domain_xml=domainxml.set_disk_source(
                    xml, disk['full-backing-filename']),
                memory_mb=source.flavor.memory_mb,
                vcpus=source.flavor.vcpus,
                labels=labels,
                disk_bytes=disk['virtual-size'],
                copy_boot_files=True)
            LOG.info('Building substrate %s (image %s, flavor %s)',
                     target.key, image_meta.id, source.flavor.name)
            build.build_substrate(self._host.get_connection(), self.pool,
                                  spec, self.settings)
        finally:
            shutil.rmtree(instance_dir, ignore_errors=True)

    def image_state(self, context, labels):
        try:
            image = self._image_api.get(context, labels['image_id'])
        except nova_exception.ImageNotFound:
            return keeper.GONE
        except Exception as e:
            LOG.debug('Cannot check image %s: %s', labels['image_id'], e)
            return keeper.UNKNOWN
        if image.get('status') in ('deleted', 'killed', 'pending_delete',
                                   'deactivated'):
            return keeper.GONE
        current = substrate_key.image_document(
            objects.ImageMeta.from_dict(image))
        if current != labels.get('image'):
            return keeper.CHANGED
        return keeper.CURRENT


def _backing_or_none(path):
    try:
        return qemuimg.backing_file(path)
    except engine_exception.SubstrateError:
        return None
