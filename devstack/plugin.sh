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

function install_nova_substrate {
    setup_develop $NOVA_SUBSTRATE_DIR
}

# _substrate_iniset_if_set <option> <value>: [substrate] <option> = <value>
# unless the value is empty, so that unset variables keep the defaults of
# nova_substrate/conf.py.
function _substrate_iniset_if_set {
    local option=$1
    local value=$2
    if [[ -n "$value" ]]; then
        iniset $NOVA_CONF substrate $option "$value"
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

    value=$(iniget $NOVA_CONF $section $option)
    value=${value:-$default}
    if [[ ",$value," != *",$item,"* ]]; then
        value="$value,$item"
    fi
    iniset $NOVA_CONF $section $option "$value"
}

# _substrate_importable <module>: whether Nova's python can import it.
function _substrate_importable {
    $PYTHON -c "import $1" >/dev/null 2>&1
}

function configure_nova_substrate_compute {
    # A compute_driver Nova cannot import stops nova-compute at start:
    # configure only a driver this installation provides.
    if _substrate_importable "nova.virt.${SUBSTRATE_COMPUTE_DRIVER%.*}"; then
        iniset $NOVA_CONF DEFAULT compute_driver "$SUBSTRATE_COMPUTE_DRIVER"
    else
        warn $LINENO "nova.virt.${SUBSTRATE_COMPUTE_DRIVER%.*} is not installed; keeping compute_driver $(iniget $NOVA_CONF DEFAULT compute_driver)"
    fi
    if [[ "$LIBVIRT_TYPE" == "qemu" ]]; then
        iniset $NOVA_CONF libvirt virt_type qemu
    fi
    iniset $NOVA_CONF libvirt hw_machine_type "$SUBSTRATE_MACHINE_TYPE"

    iniset $NOVA_CONF substrate pool_path "$SUBSTRATE_POOL_PATH"
    iniset $NOVA_CONF substrate layer_path "$SUBSTRATE_LAYER_PATH"
    _substrate_iniset_if_set connection_uri "$SUBSTRATE_CONNECTION_URI"
    _substrate_iniset_if_set memory_budget_mb "$SUBSTRATE_MEMORY_BUDGET_MB"
    _substrate_iniset_if_set substrates_per_key "$SUBSTRATE_SUBSTRATES_PER_KEY"
    _substrate_iniset_if_set build_memory_mb "$SUBSTRATE_BUILD_MEMORY_MB"
    _substrate_iniset_if_set spare_pcie_ports "$SUBSTRATE_SPARE_PCIE_PORTS"
    _substrate_iniset_if_set build_timeout "$SUBSTRATE_BUILD_TIMEOUT"
    _substrate_iniset_if_set activate_timeout "$SUBSTRATE_ACTIVATE_TIMEOUT"
    _substrate_iniset_if_set verify_memory "$SUBSTRATE_VERIFY_MEMORY"
    _substrate_iniset_if_set hook_path "$SUBSTRATE_HOOK_PATH"
    _substrate_iniset_if_set ssh_host_keys "$SUBSTRATE_SSH_HOST_KEYS"
}

function configure_nova_substrate_scheduler {
    local filters

    if ! _substrate_importable "${_SUBSTRATE_FILTER%.*}" ||
            ! _substrate_importable "${_SUBSTRATE_WEIGHER%.*}"; then
        warn $LINENO "the substrate scheduler filter and weigher are not installed; leaving the scheduler as it is"
        return
    fi

    # available_filters is a multi-valued option: one line per entry.
    filters=$(iniget_multiline $NOVA_CONF filter_scheduler available_filters)
    filters=${filters:-$_SUBSTRATE_NOVA_ALL_FILTERS}
    if [[ " $filters " != *" $_SUBSTRATE_FILTER "* ]]; then
        iniset_multiline $NOVA_CONF filter_scheduler available_filters \
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

function init_nova_substrate {
    if ! is_service_enabled n-cpu; then
        return
    fi
    # Docked memory states hold guest memory: only nova-compute (running
    # as $STACK_USER) and libvirtd (root) may read them.
    sudo install -d -m 0700 -o $STACK_USER $SUBSTRATE_POOL_PATH
    # Frozen disk layers back instance disks, so QEMU (another user) must
    # be able to reach them, as with Nova's instances directory.
    sudo install -d -m 0755 -o $STACK_USER $SUBSTRATE_LAYER_PATH
}

# _substrate_remove_dir <path>: remove a directory the plugin created,
# refusing values that cannot be one.
function _substrate_remove_dir {
    local path=$1
    if [[ -z "$path" || "$path" == "/" ]]; then
        warn $LINENO "nova-substrate: not removing '$path'"
        return
    fi
    sudo rm -rf "$path"
}

function cleanup_nova_substrate {
    _substrate_remove_dir $SUBSTRATE_POOL_PATH
}

if is_service_enabled nova-substrate; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-substrate"
        install_nova_substrate

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        # After Nova wrote nova.conf and before nova-compute starts, which
        # copies nova.conf into nova-cpu.conf.
        echo_summary "Configuring nova-substrate"
        configure_nova_substrate
        init_nova_substrate
    fi

    if [[ "$1" == "unstack" ]]; then
        # Docked substrates are memory states of a running deployment;
        # they are not valid after it stops.
        cleanup_nova_substrate
    fi

    if [[ "$1" == "clean" ]]; then
        # clean.sh also removes Nova's instances, whose disks chain on the
        # frozen layers.
        cleanup_nova_substrate
        _substrate_remove_dir $SUBSTRATE_LAYER_PATH
    fi
fi

$_XTRACE_NOVA_SUBSTRATE
