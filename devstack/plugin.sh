#!/bin/bash
#
# devstack/plugin.sh: install and configure nova-substrate.
#
# Sourced by stack.sh, unstack.sh and clean.sh as
#   source plugin.sh <mode> [phase]
# with the variables of devstack/settings already set.

_XTRACE_NOVA_SUBSTRATE=$(set +o | grep xtrace)
set -o xtrace

# Nova's own filters and weighers, used when nova.conf names none, so that
# adding the substrate ones does not drop them.
_SUBSTRATE_NOVA_ALL_FILTERS=nova.scheduler.filters.all_filters
_SUBSTRATE_NOVA_ALL_WEIGHERS=nova.scheduler.weights.all_weighers
_SUBSTRATE_FILTER=nova_substrate.scheduler.filters.SubstrateFilter
_SUBSTRATE_WEIGHER=nova_substrate.scheduler.weights.SubstrateWeigher

_SUBSTRATE_FLAVOR=m1.substrate

# _substrate_python <python arguments>: Nova's python, run from / because
# a "nova" directory in the current one (this repository has one) would
# hide Nova's package from "python -c".
function _substrate_python {
    (cd / && $PYTHON "$@")
}

# _substrate_importable <module>: whether Nova's python can import it.
function _substrate_importable {
    _substrate_python -c "import $1" >/dev/null 2>&1
}

# pip satisfies nova-substrate's "nova" requirement from PyPI when the Nova
# devstack installed from git does not match it, replacing that Nova: stop
# before that happens.
function _substrate_check_nova_version {
    if ! _substrate_python - "$NOVA_SUBSTRATE_DIR/requirements.txt" <<'EOF'
import importlib.metadata
import sys

from packaging.requirements import Requirement

with open(sys.argv[1]) as f:
    for line in f:
        line = line.split('#')[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.name.lower() != 'nova':
            continue
        have = importlib.metadata.version('nova')
        if not req.specifier.contains(have, prereleases=True):
            sys.exit('nova-substrate requires %s; devstack installed '
                     'nova %s' % (req, have))
EOF
    then
        die $LINENO "the installed Nova does not satisfy nova-substrate's requirements; use a devstack branch whose Nova matches"
    fi
}

# Nova loads compute_driver from nova.virt only. When Nova is itself a
# regular install, the nova/virt/substrate module the package installs
# lands inside Nova's package and nothing more is needed. devstack installs
# Nova editable, though: Python finds that "nova" through an import hook
# consulted after every sys.path entry, so the nova/ directory the
# regular install leaves in site-packages (without an __init__.py) turns
# "nova" into a namespace package there and hides Nova altogether. Move
# the module into Nova's checkout instead: remove the site-packages copy
# and link this repository's module into Nova's nova/virt.
function _substrate_place_driver_module {
    local installed
    local nova_virt

    if ! installed=$(_substrate_python -c "import importlib.metadata as m; print(m.distribution('nova-substrate').locate_file('nova'))"); then
        die $LINENO "nova-substrate is not installed in Nova's python"
    fi
    if [[ -f $installed/__init__.py ]]; then
        return 0
    fi
    if [[ -d $installed ]]; then
        sudo rm -rf "$installed/virt/substrate"
        # rmdir, not rm -r: anything else in there is not ours.
        if ! sudo rmdir "$installed/virt" "$installed"; then
            die $LINENO "$installed holds more than nova-substrate's driver module and hides Nova's package"
        fi
    fi
    if ! nova_virt=$(_substrate_python -c "import os, nova.virt; print(os.path.dirname(nova.virt.__file__))"); then
        die $LINENO "Nova's python cannot import nova.virt"
    fi
    ln -sfn "$NOVA_SUBSTRATE_DIR/nova/virt/substrate" "$nova_virt/substrate"
}

function install_nova_substrate {
    _substrate_check_nova_version

    # libvirt-python, a requirement, builds against libvirt's headers,
    # which devstack installs only for VIRT_DRIVER=libvirt computes: not
    # with the fake driver, nor on a scheduler-only node.
    if ! _substrate_importable libvirt; then
        if is_ubuntu; then
            install_package libvirt-dev
        else
            install_package libvirt-devel
        fi
    fi

    # Substrate builds install the in-guest hook's static helper, which
    # nova-compute compiles once from guest/guestutil.c.
    if is_service_enabled n-cpu; then
        if is_ubuntu; then
            install_package gcc libc6-dev
        else
            install_package gcc glibc-static
        fi
    fi

    # A regular install, not setup_develop: nova-substrate provides the
    # driver module nova.virt.substrate by installing nova/virt/substrate
    # into Nova's package directory, which an editable install (serving
    # only this checkout's top-level packages) cannot do. qemu-utils comes
    # with Nova; the guest image needs only qemu-guest-agent (and
    # cloud-init): builds install the hook through the agent.
    setup_install "$NOVA_SUBSTRATE_DIR"
    _substrate_place_driver_module

    if ! _substrate_python -c "import nova.virt.substrate"; then
        die $LINENO "Nova cannot import nova.virt.substrate after installing nova-substrate"
    fi
}

# _substrate_iniset_if_set <option> <value>: [substrate] <option> = <value>
# unless the value is empty, so that unset variables keep the defaults of
# nova_substrate/conf.py.
function _substrate_iniset_if_set {
    local option=$1
    local value=$2
    if [[ -n "$value" ]]; then
        iniset "$NOVA_CONF" substrate "$option" "$value"
    fi
}

# _substrate_add_to_list <section> <option> <default> <item>: append <item>
# to a comma-separated list option, starting from <default> when the option
# is unset. Running it again changes nothing.
function _substrate_add_to_list {
    local section=$1
    local option=$2
    local default=$3
    local item=$4
    local value

    value=$(iniget "$NOVA_CONF" "$section" "$option")
    value=${value:-$default}
    if [[ ",$value," != *",$item,"* ]]; then
        value="$value,$item"
    fi
    iniset "$NOVA_CONF" "$section" "$option" "$value"
}

# Parse the [substrate] section as nova-compute will and run the driver's
# own checks, so that a bad value stops stack.sh here, naming the option,
# rather than nova-compute at start.
function _substrate_validate_conf {
    if ! _substrate_python - "$NOVA_CONF" <<'EOF'
import sys

from oslo_config import cfg

from nova_substrate import conf

conf.CONF(['--config-file', sys.argv[1]], default_config_files=[],
          default_config_dirs=[])
try:
    for opt in conf.substrate_opts:
        getattr(conf.CONF.substrate, opt.dest)
    conf.validate(conf.CONF)
except (conf.InvalidOption, cfg.Error) as e:
    sys.exit(str(e))
EOF
    then
        die $LINENO "invalid [substrate] options (set from the SUBSTRATE_* variables) in $NOVA_CONF"
    fi
}

# The compute's settings go into $NOVA_CONF: start_nova_compute rebuilds
# $NOVA_CPU_CONF as a copy of it (plus local.conf's
# [[post-config|$NOVA_CPU_CONF]]) after this phase, so anything written to
# $NOVA_CPU_CONF now would be lost.
function configure_nova_substrate_compute {
    local driver=substrate.SubstrateDriver
    if [[ "$SUBSTRATE_FAKE_DRIVER" == "True" ]]; then
        driver=substrate.FakeSubstrateDriver
    fi
    iniset "$NOVA_CONF" DEFAULT compute_driver "$driver"
    iniset "$NOVA_CONF" libvirt hw_machine_type "$SUBSTRATE_MACHINE_TYPE"

    iniset "$NOVA_CONF" substrate pool_path "$SUBSTRATE_POOL_PATH"
    iniset "$NOVA_CONF" substrate layer_path "$SUBSTRATE_LAYER_PATH"
    iniset "$NOVA_CONF" substrate activation_log "$SUBSTRATE_ACTIVATION_LOG"
    iniset "$NOVA_CONF" substrate memory_budget_mb "$SUBSTRATE_MEMORY_BUDGET_MB"
    iniset "$NOVA_CONF" substrate substrates_per_key "$SUBSTRATE_PER_KEY"
    iniset "$NOVA_CONF" substrate demand_pools "$SUBSTRATE_DEMAND_POOLS"
    # pools is multi-valued: one line per entry, one entry per word.
    if [[ -n "$SUBSTRATE_POOLS" ]]; then
        # shellcheck disable=SC2086 # one value per word
        iniset_multiline "$NOVA_CONF" substrate pools $SUBSTRATE_POOLS
    fi

    _substrate_iniset_if_set max_substrates_per_key "$SUBSTRATE_MAX_PER_KEY"
    _substrate_iniset_if_set demand_window "$SUBSTRATE_DEMAND_WINDOW"
    _substrate_iniset_if_set upkeep_interval "$SUBSTRATE_UPKEEP_INTERVAL"
    _substrate_iniset_if_set connection_uri "$SUBSTRATE_CONNECTION_URI"
    _substrate_iniset_if_set build_memory_mb "$SUBSTRATE_BUILD_MEMORY_MB"
    _substrate_iniset_if_set spare_pcie_ports "$SUBSTRATE_SPARE_PCIE_PORTS"
    _substrate_iniset_if_set build_timeout "$SUBSTRATE_BUILD_TIMEOUT"
    _substrate_iniset_if_set activate_timeout "$SUBSTRATE_ACTIVATE_TIMEOUT"
    _substrate_iniset_if_set verify_memory "$SUBSTRATE_VERIFY_MEMORY"
    _substrate_iniset_if_set hook_path "$SUBSTRATE_HOOK_PATH"
    _substrate_iniset_if_set ssh_host_keys "$SUBSTRATE_SSH_HOST_KEYS"

    _substrate_configure_caches
    _substrate_validate_conf
}

function _substrate_configure_caches {
    if [[ -z "$SUBSTRATE_CACHE_REMOTE_URL" ]]; then
        iniset "$NOVA_CONF" substrate_cache enabled False
        return 0
    fi
    iniset "$NOVA_CONF" substrate_cache enabled True
    iniset "$NOVA_CONF" substrate_cache remote_url "$SUBSTRATE_CACHE_REMOTE_URL"
    iniset "$NOVA_CONF" substrate_cache cache_path "$SUBSTRATE_CACHE_PATH"
    iniset "$NOVA_CONF" substrate_cache record_path "$SUBSTRATE_CACHE_RECORD_PATH"
    iniset "$NOVA_CONF" substrate_cache qemu_group "$SUBSTRATE_CACHE_QEMU_GROUP"
    if [[ -n "$SUBSTRATE_CACHE_QUOTA_MB" ]]; then
        iniset "$NOVA_CONF" substrate_cache quota_mb "$SUBSTRATE_CACHE_QUOTA_MB"
    fi
    if [[ -n "$SUBSTRATE_CACHE_BUDGET_MB" ]]; then
        iniset "$NOVA_CONF" substrate_cache budget_mb "$SUBSTRATE_CACHE_BUDGET_MB"
    fi
}

function configure_nova_substrate_scheduler {
    local filters

    # The scheduler classes are optional: configure them only once Nova can
    # import them, since an unknown class stops nova-scheduler.
    if ! _substrate_importable "${_SUBSTRATE_FILTER%.*}" ||
            ! _substrate_importable "${_SUBSTRATE_WEIGHER%.*}"; then
        warn $LINENO "the substrate scheduler filter and weigher are not installed; leaving the scheduler as it is"
        return 0
    fi

    # available_filters is a multi-valued option: one line per entry.
    filters=$(iniget_multiline "$NOVA_CONF" filter_scheduler available_filters)
    filters=${filters:-$_SUBSTRATE_NOVA_ALL_FILTERS}
    if [[ " $filters " != *" $_SUBSTRATE_FILTER "* ]]; then
        # shellcheck disable=SC2086 # one value per word
        iniset_multiline "$NOVA_CONF" filter_scheduler available_filters \
            $filters $_SUBSTRATE_FILTER
    fi

    # enabled_filters names filter classes, not import paths.
    _substrate_add_to_list filter_scheduler enabled_filters \
        "$NOVA_FILTERS" "${_SUBSTRATE_FILTER##*.}"
    _substrate_add_to_list filter_scheduler weight_classes \
        "$_SUBSTRATE_NOVA_ALL_WEIGHERS" "$_SUBSTRATE_WEIGHER"
}

function configure_nova_substrate {
    # stack.sh edits nova.conf from a background job
    # (configure_neutron_nova) until after this phase; two concurrent
    # in-place edits of one file can lose one of them.
    if is_service_enabled nova && [[ $(type -t async_wait) == function ]]; then
        async_wait configure_neutron_nova
    fi

    if is_service_enabled n-cpu; then
        configure_nova_substrate_compute
    fi
    if is_service_enabled n-sch && [[ "$SUBSTRATE_ENABLE_SCHEDULER" == "True" ]]; then
        configure_nova_substrate_scheduler
    fi
}

# _substrate_make_dir <mode> <path>: a directory nova-compute ($STACK_USER)
# owns. An existing one is left as it is, in case the path names a
# directory that is not ours.
function _substrate_make_dir {
    local mode=$1
    local path=$2
    if [[ ! -d "$path" ]]; then
        sudo install -d -m "$mode" -o "$STACK_USER" "$path"
    fi
}

function init_nova_substrate {
    if ! is_service_enabled n-cpu; then
        return 0
    fi
    # Modes as the driver sets them on its own directories. Frozen disk
    # layers back instance disks, so QEMU (another user) must be able to
    # traverse to them; the activation log's directory comes first so that
    # it, rather than root, owns the default parent of the layer directory.
    _substrate_make_dir 0711 "$(dirname "$SUBSTRATE_ACTIVATION_LOG")"
    sudo install -d -m 0711 -o "$STACK_USER" "$SUBSTRATE_LAYER_PATH"
    # Docked memory states hold guest memory: only nova-compute and
    # libvirtd (root) may read them.
    sudo install -d -m 0700 -o "$STACK_USER" "$SUBSTRATE_POOL_PATH"
    if [[ -n "$SUBSTRATE_CACHE_REMOTE_URL" ]]; then
        # nova-compute hands the caches' sockets to QEMU's group, which it
        # can do only as a member of it.
        sudo usermod -a -G "$SUBSTRATE_CACHE_QEMU_GROUP" "$STACK_USER"
        sudo install -d -m 0710 -o "$STACK_USER" \
            -g "$SUBSTRATE_CACHE_QEMU_GROUP" "$SUBSTRATE_CACHE_PATH"
        sudo install -d -m 0700 -o "$STACK_USER" "$SUBSTRATE_CACHE_RECORD_PATH"
    fi
}

function create_nova_substrate_flavor {
    if openstack --os-region-name="$REGION_NAME" flavor show $_SUBSTRATE_FLAVOR >/dev/null 2>&1; then
        return 0
    fi
    openstack --os-region-name="$REGION_NAME" flavor create \
        --ram 512 --vcpus 1 --disk 1 \
        --property substrate:enabled=true $_SUBSTRATE_FLAVOR
}

# _substrate_remove_dir <path>: remove a directory the plugin created,
# refusing values that cannot be one (a mount point such as /dev/shm is
# the system's, not the plugin's).
function _substrate_remove_dir {
    local path=$1
    if [[ -z "$path" || "$path" == "/" ]] || mountpoint -q "$path"; then
        warn $LINENO "nova-substrate: not removing '$path'"
        return 0
    fi
    sudo rm -rf "$path"
}

function cleanup_nova_substrate {
    # Only the docked memory states, which hold host memory (tmpfs) until
    # removed. Layers are left to the driver, whose pool upkeep deletes
    # those no substrate and no instance uses any more.
    _substrate_remove_dir "$SUBSTRATE_POOL_PATH"
}

if is_service_enabled nova-substrate; then
    # nova-compute and nova-scheduler are the services that load
    # nova-substrate's code.
    if is_service_enabled n-cpu n-sch; then
        if [[ "$1" == "stack" && "$2" == "install" ]]; then
            echo_summary "Installing nova-substrate"
            install_nova_substrate

        elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
            echo_summary "Configuring nova-substrate"
            configure_nova_substrate
            init_nova_substrate
        fi
    fi

    if [[ "$1" == "stack" && "$2" == "extra" ]]; then
        if [[ "$SUBSTRATE_CREATE_FLAVOR" == "True" ]] && is_service_enabled n-api; then
            echo_summary "Creating the $_SUBSTRATE_FLAVOR flavor"
            create_nova_substrate_flavor
        fi
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_nova_substrate
    fi
fi

$_XTRACE_NOVA_SUBSTRATE
