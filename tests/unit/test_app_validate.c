/* lib/state apps: every validation, normalisation and feature rule with a minimal
 * input that breaks it, and the exact path and message it must produce. */
#include "state/state.h"
#include "test.h"

struct rule {
    const char *name;
    const char *json;
    unsigned features;
    int code;
    const char *path;
    const char *msg;
};

#define APP(fields)  "{\"id\":\"/a\",\"cmd\":\"sleep 1\"," fields "}"
#define BARE(fields) "{\"id\":\"/a\"," fields "}"

#define PORT_INDEX_MSG                                                                   \
    "Health check port indices must address an element of the ports array or container " \
    "port mappings."
#define SEGMENT_MSG                                                                    \
    "must fully match regular expression "                                             \
    "'^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-" \
    "z0-9])|("                                                                         \
    "\\.|\\.\\.)$'"
#define OP_MSG                                                                         \
    "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, " \
    "UNLIKE "                                                                          \
    "or IS"
#define CMD_MSG \
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
#define DOCKER_BRIDGE(extra)                                                     \
    BARE("\"container\":{\"type\":\"DOCKER\",\"docker\":{\"image\":\"x\"}" extra \
         "},"                                                                    \
         "\"networks\":[{\"mode\":\"container/bridge\"}]")

static const unsigned ALL = CM_APP_FEAT_ALL;

static const struct rule rules[] = {
    /* cmd / args / container */
    {"no_cmd", BARE("\"cpus\":1"), 0, CM_EVALIDATION, "/", CMD_MSG},
    {"cmd_and_args", APP("\"args\":[\"x\"]"), 0, CM_EVALIDATION, "/", CMD_MSG},
    {"cmd_one_char", BARE("\"cmd\":\"x\""), 0, CM_EVALIDATION, "/cmd",
     "must not be an empty string"},
    /* id */
    {"id_missing", "{\"cmd\":\"sleep 1\"}", 0, CM_EMALFORMED, "/id",
     "error.path.missing"},
    {"id_root", "{\"id\":\"/\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION, "/id",
     "must not be root"},
    {"id_reserved_last", "{\"id\":\"/a/restart\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION,
     "/id",
     "must not end with any of the following reserved keywords: restart, tasks, "
     "versions, ., .."},
    {"id_reserved_versions", "{\"id\":\"versions\",\"cmd\":\"sleep 1\"}", 0,
     CM_EVALIDATION, "/id",
     "must not end with any of the following reserved keywords: restart, tasks, "
     "versions, ., .."},
    {"id_uppercase", "{\"id\":\"/Abc\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION, "/id",
     SEGMENT_MSG},
    {"id_underscore", "{\"id\":\"/a_b\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION, "/id",
     SEGMENT_MSG},
    {"id_trailing_dash", "{\"id\":\"/a-/b\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION,
     "/id", SEGMENT_MSG},
    {"id_above_root", "{\"id\":\"../x\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION, "/id",
     "Path refers above the root group"},
    {"id_reserved_vip", "{\"id\":\"/vip/web\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION,
     "/id",
     "must not start with a segment reserved by clusterctl's DNS: vip, node, leader"},
    {"id_reserved_node", "{\"id\":\"node\",\"cmd\":\"sleep 1\"}", 0, CM_EVALIDATION,
     "/id",
     "must not start with a segment reserved by clusterctl's DNS: vip, node, leader"},
    {"id_reserved_leader", "{\"id\":\"/leader/x/y\",\"cmd\":\"sleep 1\"}", 0,
     CM_EVALIDATION, "/id",
     "must not start with a segment reserved by clusterctl's DNS: vip, node, leader"},
    {"id_label_too_long",
     "{\"id\":\"/"
     "a234567890123456789012345678901234567890123456789012345678901234\",\"cmd\":"
     "\"sleep 1\"}",
     0, CM_EVALIDATION, "/id",
     "each dot-separated part of a path segment must be at most 63 characters (it "
     "becomes a "
     "DNS label)"},
    /* resources */
    {"instances_negative", APP("\"instances\":-1"), 0, CM_EVALIDATION, "/instances",
     "error.min"},
    {"instances_limit", APP("\"instances\":100001"), 0, CM_EVALIDATION, "/instances",
     "error.max"},
    {"cpus_zero", APP("\"cpus\":0"), 0, CM_EVALIDATION, "/cpus", "error.min"},
    {"mem_negative", APP("\"mem\":-1"), 0, CM_EVALIDATION, "/mem", "error.min"},
    {"disk_negative", APP("\"disk\":-0.5"), 0, CM_EVALIDATION, "/disk", "error.min"},
    {"gpus_negative", APP("\"gpus\":-1"), 0, CM_EVALIDATION, "/gpus", "error.min"},
    {"limit_below_request", APP("\"cpus\":2,\"resourceLimits\":{\"cpus\":1}"), ALL,
     CM_EVALIDATION, "/resourceLimits/cpus",
     "resource limit must be greater than or equal to requested resource (2)"},
    {"executor_pattern", APP("\"executor\":\"a//b\""), 0, CM_EVALIDATION, "/executor",
     "must fully match regular expression '^(//cmd)|(/?[^/]+(/[^/]+)*)|$'"},
    /* env and secrets */
    {"env_undefined_secret", APP("\"env\":{\"P\":{\"secret\":\"nope\"}}"), ALL,
     CM_EVALIDATION, "/env/P", "references an undefined secret"},
    {"secret_empty_source", APP("\"secrets\":{\"s\":{\"source\":\"\"}}"), ALL,
     CM_EVALIDATION, "/secrets/s/source", "error.minLength"},
    {"secret_missing_source", APP("\"secrets\":{\"s\":{}}"), ALL, CM_EMALFORMED,
     "/secrets/s/source", "error.path.missing"},
    /* constraints */
    {"constraint_operator", APP("\"constraints\":[[\"hostname\",\"NOPE\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", OP_MSG},
    {"constraint_arity", APP("\"constraints\":[[\"hostname\"]]"), 0, CM_EVALIDATION,
     "/constraints(0)", "Each constraint must have either 2 or 3 fields"},
    {"constraint_arity_4", APP("\"constraints\":[[\"h\",\"IS\",\"a\",\"b\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Each constraint must have either 2 or 3 fields"},
    {"constraint_unique_value", APP("\"constraints\":[[\"h\",\"UNIQUE\",\"x\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Value specified but not used"},
    {"constraint_max_per_missing", APP("\"constraints\":[[\"h\",\"MAX_PER\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Missing value"},
    {"constraint_max_per_int", APP("\"constraints\":[[\"h\",\"MAX_PER\",\"two\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Value was not a valid integer"},
    {"constraint_group_by_int", APP("\"constraints\":[[\"h\",\"GROUP_BY\",\"1.5\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Value was not a valid integer"},
    {"constraint_like_missing", APP("\"constraints\":[[\"h\",\"LIKE\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "A regular expression value must be provided"},
    {"constraint_like_bad_regex", APP("\"constraints\":[[\"h\",\"LIKE\",\"(\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "'(' is not a valid regular expression"},
    {"constraint_unlike_unbalanced", APP("\"constraints\":[[\"h\",\"UNLIKE\",\"a)(b\"]]"),
     0, CM_EVALIDATION, "/constraints(0)", "'a)(b' is not a valid regular expression"},
    {"constraint_regex_complex",
     APP("\"constraints\":[[\"h\",\"LIKE\",\"(a{99}){99}\"]]"), 0, CM_EVALIDATION,
     "/constraints(0)", "regular expression is too long or too complex"},
    {"constraint_is_value", APP("\"constraints\":[[\"h\",\"IS\",\"a b\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "IS value must match '^[a-zA-Z0-9_/.-]*$'"},
    {"constraint_is_missing", APP("\"constraints\":[[\"h\",\"IS\"]]"), 0, CM_EVALIDATION,
     "/constraints(0)", "Missing value"},
    {"constraint_empty_field", APP("\"constraints\":[[\"\",\"UNIQUE\"]]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Constraint field must not be empty"},
    {"constraint_legacy_string_bad", APP("\"constraints\":[\"hostname\"]"), 0,
     CM_EVALIDATION, "/constraints(0)", "Each constraint must have either 2 or 3 fields"},
    {"constraint_wrong_type", APP("\"constraints\":[[\"h\",\"MAX_PER\",2]]"), 0,
     CM_EMALFORMED, "/constraints(0)(2)", "error.expected.jsstring"},
    /* roles and labels */
    {"roles_unique", APP("\"acceptedResourceRoles\":[\"*\",\"*\"]"), 0, CM_EVALIDATION,
     "/acceptedResourceRoles", "elements must be unique"},
    {"role_empty", APP("\"role\":\"\""), 0, CM_EVALIDATION, "/role", "error.minLength"},
    {"single_instance_count",
     APP("\"instances\":2,\"upgradeStrategy\":{\"minimumHealthCapacity\":0,"
         "\"maximumOverCapacity\":0},\"labels\":{\"MARATHON_SINGLE_INSTANCE_APP\":"
         "\"true\"}"),
     0, CM_EVALIDATION, "/instances", "Single instance app may only have one instance"},
    {"single_instance_upgrade",
     APP("\"labels\":{\"MARATHON_SINGLE_INSTANCE_APP\":\"true\"}"), 0, CM_EVALIDATION,
     "/upgradeStrategy",
     "Single instance app may only have an upgradeStrategy with minimumHealthCapacity 0 "
     "and "
     "maximumOverCapacity 0"},
    {"migration_labels", APP("\"labels\":{\"DCOS_MIGRATION_API_VERSION\":\"v1\"}"), 0,
     CM_EVALIDATION, "/labels",
     "DCOS_PACKAGE_FRAMEWORK_NAME must be set and non-empty when "
     "DCOS_MIGRATION_API_VERSION "
     "is set"},
    {"migration_version", APP("\"labels\":{\"DCOS_MIGRATION_API_VERSION\":\"v2\"}"), 0,
     CM_EVALIDATION, "/labels/DCOS_MIGRATION_API_VERSION",
     "DCOS_MIGRATION_API_VERSION must be v1"},
    {"vip_label_bad",
     APP("\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"web\"}}]"), 0,
     CM_EVALIDATION, "/portDefinitions(0)/labels/VIP_0",
     "invalid VIP label value: expected <name>:<port> or <ip>:<port> with a port in "
     "1..65535"},
    /* The legacy app label, where the node honours it (lib/node/vips.c). */
    {"legacy_vip_value", APP("\"labels\":{\"vip_PORT0\":\"1.2.3.4:80\"}"),
     CM_APP_FEAT_LEGACY_VIP, CM_EVALIDATION, "/labels/vip_PORT0",
     "invalid legacy VIP label value: expected tcp://<ipv4>:<port> or "
     "udp://<ipv4>:<port> "
     "with a port in 1..65535"},
    {"legacy_vip_name", APP("\"labels\":{\"vip_PORT0\":\"tcp://web:80\"}"),
     CM_APP_FEAT_LEGACY_VIP, CM_EVALIDATION, "/labels/vip_PORT0",
     "invalid legacy VIP label value: expected tcp://<ipv4>:<port> or "
     "udp://<ipv4>:<port> "
     "with a port in 1..65535"},
    {"legacy_vip_index", APP("\"labels\":{\"VIP_PORT1\":\"tcp://1.2.3.4:80\"}"),
     CM_APP_FEAT_LEGACY_VIP, CM_EVALIDATION, "/labels/VIP_PORT1",
     "invalid legacy VIP label: the key must be vip_PORT<n> with <n> the index of one of "
     "the app's 1 port(s)"},
    {"vip_label_port_zero",
     APP("\"portDefinitions\":[{\"port\":0,\"labels\":{\"vip\":\"/web:0\"}}]"), 0,
     CM_EVALIDATION, "/portDefinitions(0)/labels/vip",
     "invalid VIP label value: expected <name>:<port> or <ip>:<port> with a port in "
     "1..65535"},
    /* networks */
    {"networks_host_plus_bridge",
     APP("\"networks\":[{\"mode\":\"host\"},{\"mode\":\"container/bridge\"}]"), 0,
     CM_EVALIDATION, "/networks",
     "host or container/bridge networking must be the only network"},
    {"network_name_required", APP("\"networks\":[{\"mode\":\"container\"}]"), ALL,
     CM_EVALIDATION, "/networks(0)/name",
     "network name must be specified (clusterctl has no default container network)"},
    {"network_name_only_container",
     APP("\"networks\":[{\"mode\":\"host\",\"name\":\"x\"}]"), 0, CM_EVALIDATION,
     "/networks(0)/name", "a network name is only allowed with mode container"},
    {"network_names_unique",
     APP("\"networks\":[{\"mode\":\"container\",\"name\":\"x\"},{\"mode\":\"container\","
         "\"name\":\"x\"}]"),
     ALL, CM_EVALIDATION, "/networks", "Networks must have unique names"},
    {"docker_single_container_network",
     BARE("\"container\":{\"docker\":{\"image\":\"i\"}},\"networks\":[{\"name\":\"x\"},{"
          "\"name\":\"y\"}]"),
     ALL, CM_EVALIDATION, "/networks",
     "may only specify a single container network when using the Docker container "
     "engine"},
    {"legacy_network_and_networks",
     BARE("\"container\":{\"docker\":{\"image\":\"i\",\"network\":\"BRIDGE\"}},"
          "\"networks\":[{"
          "\"mode\":\"container/bridge\"}]"),
     ALL, CM_EVALIDATION, "/",
     "must not specify both container.docker.network and networks"},
    {"networks_and_ip_address",
     APP("\"networks\":[{\"mode\":\"host\"}],\"ipAddress\":{\"networkName\":\"x\"}"), ALL,
     CM_EVALIDATION, "/", "must not specify both networks and ipAddress"},
    {"ip_address_and_ports", APP("\"ipAddress\":{\"networkName\":\"x\"},\"ports\":[0]"),
     ALL, CM_EVALIDATION, "/", "cannot specify both an IP address and port"},
    {"ip_discovery_docker",
     BARE("\"container\":{\"docker\":{\"image\":\"i\"}},\"ipAddress\":{\"networkName\":"
          "\"x\","
          "\"discovery\":{\"ports\":[{\"number\":80,\"name\":\"http\"}]}}"),
     ALL, CM_EVALIDATION, "/ipAddress",
     "ipAddress/discovery is not allowed for Docker containers"},
    {"docker_network_none",
     BARE("\"container\":{\"docker\":{\"image\":\"i\",\"network\":\"NONE\"}}"), ALL,
     CM_EVALIDATION, "/container",
     "docker network NONE (no network at all) is not supported"},
    /* ports */
    {"port_mappings_in_host_mode",
     APP("\"container\":{\"type\":\"MESOS\",\"portMappings\":[{\"containerPort\":80}]}"),
     0, CM_EVALIDATION, "/container",
     "portMappings are not allowed with host-networking"},
    {"port_definitions_in_bridge_mode",
     BARE("\"container\":{\"docker\":{\"image\":\"x\"}},\"networks\":[{\"mode\":"
          "\"container/bridge\"}],\"portDefinitions\":[{\"port\":80}]"),
     ALL, CM_EVALIDATION, "/portDefinitions",
     "portDefinitions are only allowed with host-networking"},
    {"ports_and_port_definitions",
     APP("\"ports\":[1],\"portDefinitions\":[{\"port\":2}]"), 0, CM_EVALIDATION, "/",
     "cannot specify both ports and port definitions"},
    {"uris_and_fetch",
     APP("\"uris\":[\"http://x/a\"],\"fetch\":[{\"uri\":\"http://x/b\"}]"), ALL,
     CM_EVALIDATION, "/uris", "cannot specify both uris and fetch"},
    {"port_definition_range", APP("\"portDefinitions\":[{\"port\":70000}]"), 0,
     CM_EVALIDATION, "/portDefinitions(0)/port", "error.max"},
    {"port_definition_name", APP("\"portDefinitions\":[{\"port\":0,\"name\":\"Http\"}]"),
     0, CM_EVALIDATION, "/portDefinitions(0)/name",
     "must fully match regular expression '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"},
    {"port_names_unique",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"a\"},{\"port\":0,\"name\":\"a\"}]"),
     0, CM_EVALIDATION, "/portDefinitions", "Port names must be unique."},
    {"ports_unique", APP("\"portDefinitions\":[{\"port\":80},{\"port\":80}]"), 0,
     CM_EVALIDATION, "/portDefinitions", "Ports must be unique."},
    {"require_ports_dynamic", APP("\"requirePorts\":true"), 0, CM_EVALIDATION,
     "/requirePorts",
     "requirePorts needs fixed ports: every portDefinitions port must be non-zero"},
    {"mapping_container_port",
     DOCKER_BRIDGE(",\"portMappings\":[{\"containerPort\":-1}]"), ALL, CM_EVALIDATION,
     "/container/portMappings(0)/containerPort", "error.min"},
    {"mapping_host_ports_unique",
     DOCKER_BRIDGE(",\"portMappings\":[{\"containerPort\":1,\"hostPort\":80},{"
                   "\"containerPort\":2,\"hostPort\":80}]"),
     ALL, CM_EVALIDATION, "/container/portMappings", "Host ports must be unique."},
    {"mapping_service_ports_unique",
     DOCKER_BRIDGE(",\"portMappings\":[{\"servicePort\":10000},{\"servicePort\":10000}]"),
     ALL, CM_EVALIDATION, "/container/portMappings", "Service ports must be unique."},
    {"mapping_names_unique",
     DOCKER_BRIDGE(
         ",\"portMappings\":[{\"name\":\"a\"},{\"name\":\"a\",\"protocol\":\"udp\"}]"),
     ALL, CM_EVALIDATION, "/container/portMappings", "Port names must be unique."},
    {"mapping_network_names",
     BARE(
         "\"cmd\":\"sleep 1\",\"networks\":[{\"name\":\"a\"}],\"container\":{\"type\":"
         "\"MESOS\",\"portMappings\":[{\"containerPort\":80,\"networkNames\":[\"b\"]}]}"),
     ALL, CM_EVALIDATION, "/container/portMappings(0)/networkNames",
     "networkNames must name container networks of the app"},
    {"mapping_network_names_required",
     BARE("\"cmd\":\"sleep "
          "1\",\"networks\":[{\"name\":\"a\"},{\"name\":\"b\"}],\"container\":{"
          "\"type\":\"MESOS\",\"portMappings\":[{\"containerPort\":80,\"hostPort\":0}]}"),
     ALL, CM_EVALIDATION, "/container/portMappings(0)/networkNames",
     "must be a single item list when hostPort is specified and more than 1 container "
     "network "
     "is defined"},
    {"both_port_mapping_forms",
     BARE("\"container\":{\"docker\":{\"image\":\"i\",\"network\":\"BRIDGE\","
          "\"portMappings\":[]"
          "},\"portMappings\":[]}"),
     ALL, CM_EVALIDATION, "/container/portMappings",
     "cannot specify both container.portMappings and the deprecated "
     "container.docker.portMappings"},
    /* container */
    {"docker_without_docker", BARE("\"container\":{\"type\":\"DOCKER\"}"), ALL,
     CM_EVALIDATION, "/container/docker", "must be defined for a DOCKER container"},
    {"docker_without_image", BARE("\"container\":{\"docker\":{}}"), ALL, CM_EVALIDATION,
     "/container/docker/image", "error.path.missing"},
    {"docker_empty_image", BARE("\"container\":{\"docker\":{\"image\":\"\"}}"), ALL,
     CM_EVALIDATION, "/container/docker/image", "error.minLength"},
    {"docker_credential",
     BARE("\"container\":{\"docker\":{\"image\":\"i\",\"credential\":{\"principal\":"
          "\"p\"}}}"),
     ALL, CM_EVALIDATION, "/container/docker/credential",
     "docker credentials are deprecated and no longer supported; use pullConfig"},
    {"mesos_parameters",
     BARE(
         "\"container\":{\"type\":\"MESOS\",\"docker\":{\"image\":\"i\",\"parameters\":[{"
         "\"key\":\"a\",\"value\":\"b\"}]}}"),
     ALL, CM_EVALIDATION, "/container/docker/parameters",
     "parameters are only supported with the Docker containerizer"},
    {"mesos_privileged",
     BARE("\"container\":{\"type\":\"MESOS\",\"docker\":{\"image\":\"i\",\"privileged\":"
          "true}}"),
     ALL, CM_EVALIDATION, "/container/docker/privileged",
     "privileged is only supported with the Docker containerizer"},
    {"pull_config_docker",
     BARE(
         "\"container\":{\"docker\":{\"image\":\"i\",\"pullConfig\":{\"secret\":\"s\"}}},"
         "\"secrets\":{\"s\":{\"source\":\"x\"}}"),
     ALL, CM_EVALIDATION, "/container/docker/pullConfig",
     "pullConfig is supported only with the Mesos containerizer"},
    {"pull_config_undefined",
     BARE("\"container\":{\"type\":\"MESOS\",\"docker\":{\"image\":\"i\",\"pullConfig\":{"
          "\"secret\":\"s\"}}}"),
     ALL, CM_EVALIDATION, "/container/docker/pullConfig/secret",
     "references an undefined secret"},
    {"gpus_docker", BARE("\"gpus\":1,\"container\":{\"docker\":{\"image\":\"i\"}}"), ALL,
     CM_EVALIDATION, "/gpus", "GPU resources only work with the Mesos containerizer"},
    {"persistent_path_slash",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"a/b\","
         "\"mode\":\"RW\",\"persistent\":{\"size\":1}}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(0)/containerPath",
     "value must not contain \"/\""},
    {"persistent_read_only",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"d\","
         "\"mode\":\"RO\",\"persistent\":{\"size\":1}}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(0)/mode",
     "persistent volumes must be read-write (RW)"},
    {"persistent_size",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"d\","
         "\"mode\":\"RW\",\"persistent\":{\"size\":0}}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(0)/persistent/size", "error.min"},
    {"persistent_max_size",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"d\","
         "\"mode\":\"RW\",\"persistent\":{\"size\":10,\"maxSize\":5}}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(0)/persistent/maxSize",
     "maxSize must be greater than or equal to size"},
    {"resident_unreachable",
     APP("\"unreachableStrategy\":{\"inactiveAfterSeconds\":1,\"expungeAfterSeconds\":2},"
         "\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"d\","
         "\"mode\":\"RW\",\"persistent\":{\"size\":1}}]}"),
     ALL, CM_EVALIDATION, "/unreachableStrategy",
     "unreachableStrategy must be disabled for resident tasks"},
    {"resident_over_capacity",
     APP("\"upgradeStrategy\":{\"maximumOverCapacity\":0.5},\"container\":{\"type\":"
         "\"MESOS\","
         "\"volumes\":[{\"containerPath\":\"d\",\"mode\":\"RW\",\"persistent\":{\"size\":"
         "1}}]}"),
     ALL, CM_EVALIDATION, "/upgradeStrategy/maximumOverCapacity",
     "must be 0 for apps with persistent volumes"},
    {"residency_without_volumes", APP("\"residency\":{}"), ALL, CM_EVALIDATION,
     "/residency", "residency requires persistent volumes"},
    {"secret_volume_undefined",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"/s\","
         "\"secret\":\"nope\"}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(0)/secret",
     "references an undefined secret"},
    {"volume_paths_unique",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"/d\","
         "\"hostPath\":\"/x\"},{\"containerPath\":\"/d\",\"hostPath\":\"/y\"}]}"),
     ALL, CM_EVALIDATION, "/container/volumes(1)/containerPath",
     "container paths must be unique"},
    /* health checks */
    {"hc_port_index_range", APP("\"healthChecks\":[{\"portIndex\":1}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/portIndex", PORT_INDEX_MSG},
    {"hc_no_ports",
     APP("\"portDefinitions\":[],\"healthChecks\":[{\"protocol\":\"TCP\"}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/portIndex", PORT_INDEX_MSG},
    {"hc_port_and_index", APP("\"healthChecks\":[{\"port\":80,\"portIndex\":0}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)",
     "Health check must specify either port or portIndex, not both"},
    {"hc_port_range", APP("\"healthChecks\":[{\"port\":65536}]"), 0, CM_EVALIDATION,
     "/healthChecks(0)/port", "error.max"},
    {"hc_command_missing", APP("\"healthChecks\":[{\"protocol\":\"COMMAND\"}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/command",
     "command is required for COMMAND health checks"},
    {"hc_command_not_command",
     APP("\"healthChecks\":[{\"protocol\":\"TCP\",\"command\":{\"value\":\"true\"}}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/command",
     "command is only allowed for COMMAND health checks"},
    {"hc_interval", APP("\"healthChecks\":[{\"intervalSeconds\":0}]"), 0, CM_EVALIDATION,
     "/healthChecks(0)/intervalSeconds", "error.min"},
    {"hc_grace", APP("\"healthChecks\":[{\"gracePeriodSeconds\":-1}]"), 0, CM_EVALIDATION,
     "/healthChecks(0)/gracePeriodSeconds", "error.min"},
    {"hc_path", APP("\"healthChecks\":[{\"path\":\"health\"}]"), 0, CM_EVALIDATION,
     "/healthChecks(0)/path", "path must start with '/'"},
    {"hc_ipv6_marathon_level", APP("\"healthChecks\":[{\"ipProtocol\":\"IPv6\"}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/ipProtocol",
     "IPv6 health checks are only supported with Docker containers and MESOS_HTTP, "
     "MESOS_HTTPS or MESOS_TCP"},
    {"hc_two_mesos",
     APP("\"healthChecks\":[{\"protocol\":\"MESOS_HTTP\"},{\"protocol\":\"MESOS_TCP\"}]"),
     0, CM_EVALIDATION, "/healthChecks",
     "AppDefinition can contain at most one Mesos health check"},
    {"hc_mesos_and_command",
     APP("\"healthChecks\":[{\"protocol\":\"MESOS_TCP\"},{\"protocol\":\"COMMAND\","
         "\"command\":{\"value\":\"true\"}}]"),
     0, CM_EVALIDATION, "/healthChecks",
     "AppDefinition can contain at most one Mesos health check"},
    /* readiness checks */
    {"rc_two",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"http-api\"}],\"readinessChecks\":[{"
         "},{}]"),
     0, CM_EVALIDATION, "/readinessChecks", "only one readiness check is supported"},
    {"rc_port_name", APP("\"readinessChecks\":[{\"portName\":\"nope\"}]"), 0,
     CM_EVALIDATION, "/readinessChecks(0)/portName",
     "no port named 'nope' in portDefinitions or portMappings"},
    {"rc_default_port_name", APP("\"readinessChecks\":[{}]"), 0, CM_EVALIDATION,
     "/readinessChecks(0)/portName",
     "no port named 'http-api' in portDefinitions or portMappings"},
    {"rc_timeout",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"h\"}],\"readinessChecks\":[{"
         "\"portName\":"
         "\"h\",\"intervalSeconds\":5,\"timeoutSeconds\":5}]"),
     0, CM_EVALIDATION, "/readinessChecks(0)/timeoutSeconds",
     "must be less than intervalSeconds"},
    {"rc_codes_empty",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"h\"}],\"readinessChecks\":[{"
         "\"portName\":"
         "\"h\",\"httpStatusCodesForReady\":[]}]"),
     0, CM_EVALIDATION, "/readinessChecks(0)/httpStatusCodesForReady",
     "must not be empty"},
    {"rc_code_range",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"h\"}],\"readinessChecks\":[{"
         "\"portName\":"
         "\"h\",\"httpStatusCodesForReady\":[99]}]"),
     0, CM_EVALIDATION, "/readinessChecks(0)/httpStatusCodesForReady(0)", "error.min"},
    /* check */
    {"check_kind", APP("\"check\":{\"intervalSeconds\":5}"), 0, CM_EVALIDATION, "/check",
     "exactly one of http, tcp or exec must be set"},
    {"check_port_index", APP("\"check\":{\"tcp\":{\"portIndex\":3}}"), 0, CM_EVALIDATION,
     "/check/tcp/portIndex",
     "Check port indices must address an element of the ports array or container port "
     "mappings."},
    {"check_exec_empty", APP("\"check\":{\"exec\":{\"command\":{\"shell\":\"\"}}}"), 0,
     CM_EVALIDATION, "/check/exec/command/shell", "error.minLength"},
    /* dependencies, strategies, backoff */
    {"depends_on_itself", APP("\"dependencies\":[\"a\"]"), 0, CM_EVALIDATION,
     "/dependencies(0)", "an app cannot depend on itself"},
    {"dependency_path", APP("\"dependencies\":[\"/Bad\"]"), 0, CM_EVALIDATION,
     "/dependencies(0)", SEGMENT_MSG},
    {"upgrade_min_above_1", APP("\"upgradeStrategy\":{\"minimumHealthCapacity\":1.5}"), 0,
     CM_EVALIDATION, "/upgradeStrategy/minimumHealthCapacity", "is greater than 1"},
    {"upgrade_max_below_0", APP("\"upgradeStrategy\":{\"maximumOverCapacity\":-0.1}"), 0,
     CM_EVALIDATION, "/upgradeStrategy/maximumOverCapacity", "is less than 0"},
    {"backoff_seconds", APP("\"backoffSeconds\":-1"), 0, CM_EVALIDATION,
     "/backoffSeconds", "error.min"},
    {"backoff_factor", APP("\"backoffFactor\":0.99"), 0, CM_EVALIDATION, "/backoffFactor",
     "error.min"},
    {"max_launch_delay", APP("\"maxLaunchDelaySeconds\":-5"), 0, CM_EVALIDATION,
     "/maxLaunchDelaySeconds", "error.min"},
    {"kill_grace", APP("\"taskKillGracePeriodSeconds\":-2"), 0, CM_EVALIDATION,
     "/taskKillGracePeriodSeconds", "error.min"},
    {"kill_grace_minus_one", APP("\"taskKillGracePeriodSeconds\":-1"), 0, CM_EVALIDATION,
     "/taskKillGracePeriodSeconds", "error.min"},
    {"hc_port_index_negative", APP("\"healthChecks\":[{\"portIndex\":-1}]"), 0,
     CM_EVALIDATION, "/healthChecks(0)/portIndex", "error.min"},
    {"hc_port_negative", APP("\"healthChecks\":[{\"port\":-1}]"), 0, CM_EVALIDATION,
     "/healthChecks(0)/port", "error.min"},
    {"hc_port_name_unknown",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"web\"}],"
         "\"healthChecks\":[{\"portName\":\"admin\"}]"),
     0, CM_EVALIDATION, "/healthChecks(0)/portName",
     "no port named 'admin' in portDefinitions or portMappings"},
    {"hc_port_name_and_index",
     APP("\"portDefinitions\":[{\"port\":0,\"name\":\"web\"}],"
         "\"healthChecks\":[{\"portName\":\"web\",\"portIndex\":0}]"),
     0, CM_EVALIDATION, "/healthChecks(0)",
     "Health check must specify only one of port, portIndex and portName"},
    {"hc_port_name_no_ports",
     APP("\"portDefinitions\":[],\"healthChecks\":[{\"protocol\":\"TCP\","
         "\"portName\":\"web\"}]"),
     0, CM_EVALIDATION, "/healthChecks(0)/portName",
     "no port named 'web' in portDefinitions or portMappings"},
    {"check_port_index_negative", APP("\"check\":{\"http\":{\"portIndex\":-3}}"), 0,
     CM_EVALIDATION, "/check/http/portIndex", "error.min"},
    {"mapping_host_port_negative",
     DOCKER_BRIDGE(",\"portMappings\":[{\"containerPort\":80,\"hostPort\":-1}]"), ALL,
     CM_EVALIDATION, "/container/portMappings(0)/hostPort", "error.min"},
    {"unreachable_order",
     APP("\"unreachableStrategy\":{\"inactiveAfterSeconds\":700,\"expungeAfterSeconds\":"
         "600}"),
     0, CM_EVALIDATION, "/unreachableStrategy",
     "inactiveAfterSeconds must be less or equal to expungeAfterSeconds"},
    {"unreachable_string", APP("\"unreachableStrategy\":\"sometimes\""), 0, CM_EMALFORMED,
     "/unreachableStrategy", "error.unknown.enum.literal"},
    {"kill_selection", APP("\"killSelection\":\"RANDOM\""), 0, CM_EMALFORMED,
     "/killSelection", "error.unknown.enum.literal"},
    {"fetch_uri_empty", APP("\"fetch\":[{\"uri\":\"\"}]"), ALL, CM_EVALIDATION,
     "/fetch(0)/uri", "error.minLength"},
    {"fetch_uri_missing", APP("\"fetch\":[{\"cache\":true}]"), ALL, CM_EMALFORMED,
     "/fetch(0)/uri", "error.path.missing"},
    /* features clusterctl cannot honour yet */
    {"feat_image", BARE("\"container\":{\"docker\":{\"image\":\"nginx\"}}"), 0,
     CM_EUNSUPPORTED, "/container/docker/image",
     "unsupported feature: container.docker.image (container images are not supported "
     "yet)"},
    {"feat_docker_parameters",
     BARE("\"container\":{\"docker\":{\"image\":\"i\",\"parameters\":[{\"key\":\"a\","
          "\"value\":\"b\"}]}}"),
     CM_APP_FEAT_IMAGES, CM_EUNSUPPORTED, "/container/docker/parameters",
     "unsupported feature: container.docker.parameters (docker run options have no "
     "meaning "
     "without Docker)"},
    {"feat_persistent",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"d\","
         "\"mode\":\"RW\",\"persistent\":{\"size\":1}}]}"),
     0, CM_EUNSUPPORTED, "/container/volumes(0)",
     "unsupported feature: persistent volumes (local persistent volumes and resident "
     "apps are "
     "not supported yet)"},
    {"feat_external",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"/d\","
         "\"mode\":\"RW\",\"external\":{\"name\":\"v\",\"provider\":\"dvdi\"}}]}"),
     0, CM_EUNSUPPORTED, "/container/volumes(0)",
     "unsupported feature: external volumes (volume drivers are not supported)"},
    {"feat_host_volume",
     APP("\"container\":{\"type\":\"MESOS\",\"volumes\":[{\"containerPath\":\"/d\","
         "\"hostPath\":\"/srv\",\"mode\":\"RO\"}]}"),
     0, CM_EUNSUPPORTED, "/container/volumes(0)",
     "unsupported feature: host volumes (bind mounts of host paths are not supported "
     "yet)"},
    {"feat_secrets", APP("\"secrets\":{\"s\":{\"source\":\"x\"}}"), 0, CM_EUNSUPPORTED,
     "/secrets", "unsupported feature: secrets (the secret store is not available yet)"},
    {"feat_env_secret",
     APP("\"secrets\":{\"s\":{\"source\":\"x\"}},\"env\":{\"P\":{\"secret\":\"s\"}}"), 0,
     CM_EUNSUPPORTED, "/env/P",
     "unsupported feature: secret environment variables (the secret store is not "
     "available "
     "yet)"},
    {"feat_fetch", APP("\"uris\":[\"http://x/a.zip\"]"), 0, CM_EUNSUPPORTED, "/fetch",
     "unsupported feature: fetch/uris (downloading artifacts into the sandbox is not "
     "supported "
     "yet)"},
    {"feat_gpus", APP("\"gpus\":1"), 0, CM_EUNSUPPORTED, "/gpus",
     "unsupported feature: gpus (no node offers GPUs)"},
    {"feat_executor", APP("\"executor\":\"/opt/exec\""), 0, CM_EUNSUPPORTED, "/executor",
     "unsupported feature: executor (custom Mesos executors are not supported; tasks run "
     "under clusterctl's executor)"},
    {"feat_container_network",
     APP("\"networks\":[{\"mode\":\"container\",\"name\":\"n\"}]"), 0, CM_EUNSUPPORTED,
     "/networks(0)",
     "unsupported feature: container networks (IP-per-task networking, networks mode "
     "container or ipAddress, is not supported yet)"},
    {"feat_resource_limits", APP("\"resourceLimits\":{\"mem\":\"unlimited\"}"), 0,
     CM_EUNSUPPORTED, "/resourceLimits",
     "unsupported feature: resourceLimits (limits above the requested resources are not "
     "supported yet)"},
    {"feat_tty", APP("\"tty\":true"), 0, CM_EUNSUPPORTED, "/tty",
     "unsupported feature: tty (tasks get no terminal)"},
    {"feat_legacy_vip", APP("\"labels\":{\"VIP_PORT0\":\"tcp://1.2.3.4:80\"}"), 0,
     CM_EUNSUPPORTED, "/labels/VIP_PORT0",
     "unsupported feature: legacy Minuteman task label VIP_PORT0 (put a VIP_0 label on "
     "the "
     "port definition or port mapping instead)"},
    {"feat_linux_info",
     BARE("\"cmd\":\"sleep 1\",\"container\":{\"type\":\"MESOS\","
          "\"linuxInfo\":{}}"),
     ALL, CM_EUNSUPPORTED, "/container/linuxInfo",
     "unsupported feature: container.linuxInfo (seccomp, IPC and shared memory settings "
     "are "
     "not supported)"},
    {"feat_executor_resources", APP("\"executorResources\":{\"cpus\":0.1}"), ALL,
     CM_EUNSUPPORTED, "/executorResources",
     "unsupported feature: executorResources (tasks run under clusterctl's own "
     "executor)"},
};

static void check_rule(const struct rule *r)
{
    struct cm_app_parse_opts o = {.base = "/", .features = r->features};
    struct cm_app_report rep = {0};
    struct cm_app *app = NULL;
    int rv = cm_app_parse(r->json, strlen(r->json), &o, &app, &rep);
    if (rv != r->code) {
        for (size_t i = 0; i < rep.n; i++) {
            printf("#   [%d] %s: %s\n", rep.v[i].kind, rep.v[i].path, rep.v[i].msg);
        }
        test__fail(__FILE__, __LINE__, "%s: got %d (%s), want %s", r->name, rv,
                   cm_strerror(rv), cm_strerror(r->code));
    }
    bool found = false;
    for (size_t i = 0; i < rep.n && !found; i++) {
        found = rep.v[i].kind != CM_APP_ISSUE_WARNING &&
                strcmp(rep.v[i].path, r->path) == 0 && strcmp(rep.v[i].msg, r->msg) == 0;
    }
    if (!found) {
        for (size_t i = 0; i < rep.n; i++) {
            printf("#   [%d] %s: %s\n", rep.v[i].kind, rep.v[i].path, rep.v[i].msg);
        }
        test__fail(__FILE__, __LINE__, "%s: no issue %s: %s", r->name, r->path, r->msg);
    }
    /* The body lists the issue under its path. */
    struct cm_buf body = {0};
    ASSERT_OK(cm_app_report_body(&rep, rv, &body));
    ASSERT_NOT_NULL(strstr(body.data, "\"details\":[{\"path\":"));
    cm_buf_done(&body);
    cm_app_report_done(&rep);
    cm_app_free(app);
}

TEST(validate_rules_table)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(rules); i++) {
        check_rule(&rules[i]);
    }
}

/* Each unsupported rule passes once its feature is allowed. */
TEST(validate_features_lift_unsupported)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(rules); i++) {
        const struct rule *r = &rules[i];
        if (r->code != CM_EUNSUPPORTED || strstr(r->path, "linuxInfo") != NULL ||
            strstr(r->path, "executorResources") != NULL) {
            continue; /* those two are not modelled, so no flag lifts them */
        }
        struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
        struct cm_app *app = NULL;
        struct cm_app_report rep = {0};
        int rv = cm_app_parse(r->json, strlen(r->json), &o, &app, &rep);
        if (rv != 0) {
            for (size_t k = 0; k < rep.n; k++) {
                printf("#   [%d] %s: %s\n", rep.v[k].kind, rep.v[k].path, rep.v[k].msg);
            }
            test__fail(__FILE__, __LINE__, "%s with every feature: %s", r->name,
                       cm_strerror(rv));
        }
        cm_app_free(app);
        cm_app_report_done(&rep);
    }
}

struct accept {
    const char *name;
    const char *json;
};

static const struct accept accepted[] = {
    {"cmd_only", APP("\"instances\":0")},
    {"args_only", BARE("\"args\":[\"/bin/sleep\",\"1\"]")},
    {"ports_equal_port_definitions",
     APP("\"ports\":[80],\"portDefinitions\":[{\"port\":80}]")},
    {"operator_case_insensitive",
     APP("\"constraints\":[[\"hostname\",\"unique\"],[\"rack\","
         "\"group_by\"],[\"a\",\"max_per\",\"3\"]]")},
    {"legacy_string_constraint", APP("\"constraints\":[\"hostname:LIKE:web-[0-9]+\"]")},
    {"object_constraint",
     APP("\"constraints\":[{\"fieldName\":\"zone\",\"operator\":\"IS\","
         "\"value\":\"a\"}]")},
    {"cluster_without_value", APP("\"constraints\":[[\"rack\",\"CLUSTER\"]]")},
    {"two_command_checks",
     APP("\"healthChecks\":[{\"protocol\":\"COMMAND\",\"command\":{\"value\":\"a\"}},{"
         "\"protocol\":\"COMMAND\",\"command\":{\"value\":\"b\"}}]")},
    {"hc_fixed_port", APP("\"healthChecks\":[{\"protocol\":\"TCP\",\"port\":22}]")},
    {"executor_cmd", APP("\"executor\":\"//cmd\"")},
    {"vip_labels",
     APP("\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"/web:80\","
         "\"VIP_1\":\"10.1.2.3:8080\",\"vip2\":\"[fd01::1]:80\"}}]")},
    {"bridge_without_image",
     APP("\"networks\":[{\"mode\":\"container/"
         "bridge\"}],\"container\":{\"type\":\"MESOS\","
         "\"portMappings\":[{\"containerPort\":80,\"hostPort\":0,\"name\":\"http\"}]}")},
    {"bridge_default_mapping", APP("\"networks\":[{\"mode\":\"container/bridge\"}]")},
    {"unknown_fields",
     APP("\"foo\":1,\"container\":null,\"healthChecks\":[{\"bar\":2}]")},
    {"unreachable_zero", APP("\"unreachableStrategy\":{\"inactiveAfterSeconds\":0,"
                             "\"expungeAfterSeconds\":0}")},
    {"dependency_missing_app_ok", APP("\"dependencies\":[\"/does/not/exist\"]")},
};

TEST(validate_accepted_inputs)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(accepted); i++) {
        struct cm_app *app = NULL;
        struct cm_app_report rep = {0};
        int rv =
            cm_app_parse(accepted[i].json, strlen(accepted[i].json), NULL, &app, &rep);
        if (rv != 0) {
            for (size_t k = 0; k < rep.n; k++) {
                printf("#   [%d] %s: %s\n", rep.v[k].kind, rep.v[k].path, rep.v[k].msg);
            }
            test__fail(__FILE__, __LINE__, "%s: %s", accepted[i].name, cm_strerror(rv));
        }
        cm_app_free(app);
        cm_app_report_done(&rep);
    }
}

TEST(validate_bridge_default_mapping_filled_in)
{
    const char *j = APP("\"networks\":[{\"mode\":\"container/bridge\"}]");
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, NULL));
    ASSERT_INT_EQ(a->container.type, CM_APP_CONTAINER_MESOS);
    ASSERT_UINT_EQ(a->container.n_port_mappings, 1);
    ASSERT_INT_EQ(a->container.port_mappings[0].container_port, 0);
    ASSERT_INT_EQ(a->container.port_mappings[0].host_port, 0);
    ASSERT_STR_EQ(a->container.port_mappings[0].name, "default");
    ASSERT_UINT_EQ(a->n_port_defs, 0);
    ASSERT_FALSE(a->require_ports);
    cm_app_free(a);
}

TEST(validate_all_errors_collected_in_one_report)
{
    const char *j =
        "{\"id\":\"/a\",\"cmd\":\"sleep 1\",\"cpus\":0,\"mem\":-1,\"instances\":-1,"
        "\"backoffFactor\":0.5,\"constraints\":[[\"h\",\"NOPE\"]]}";
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    ASSERT_ERR(cm_app_parse(j, strlen(j), NULL, &a, &rep), CM_EVALIDATION);
    ASSERT_UINT_EQ(cm_app_report_count(&rep, CM_APP_ISSUE_INVALID), 5);
    struct cm_buf body = {0};
    ASSERT_OK(cm_app_report_body(&rep, CM_EVALIDATION, &body));
    ASSERT_STR_EQ(
        body.data,
        "{\"message\":\"Object is not valid\",\"details\":[{\"path\":\"/constraints(0)\","
        "\"errors\":[\"" OP_MSG
        "\"]},{\"path\":\"/instances\",\"errors\":[\"error.min\"]},"
        "{\"path\":\"/cpus\",\"errors\":[\"error.min\"]},{\"path\":\"/mem\","
        "\"errors\":[\"error.min\"]},{\"path\":\"/backoffFactor\",\"errors\":["
        "\"error.min\"]}]}");
    ASSERT_INT_EQ(cm_app_http_status(CM_EVALIDATION), 422);
    cm_buf_done(&body);
    cm_app_report_done(&rep);
}

TEST(validate_unsupported_body_names_the_feature)
{
    const char *j = BARE("\"container\":{\"docker\":{\"image\":\"nginx\"}},\"gpus\":2");
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_NONE};
    /* gpus with DOCKER is invalid first: validation wins over unsupported. */
    ASSERT_ERR(cm_app_parse(j, strlen(j), &o, &a, &rep), CM_EVALIDATION);
    cm_app_report_done(&rep);

    j = BARE("\"container\":{\"docker\":{\"image\":\"nginx\"}}");
    ASSERT_ERR(cm_app_parse(j, strlen(j), &o, &a, &rep), CM_EUNSUPPORTED);
    struct cm_buf body = {0};
    ASSERT_OK(cm_app_report_body(&rep, CM_EUNSUPPORTED, &body));
    ASSERT_STR_EQ(
        body.data,
        "{\"message\":\"unsupported feature: container.docker.image (container "
        "images are not supported yet)\",\"details\":[{\"path\":\"/container/docker/"
        "image\",\"errors\":[\"unsupported feature: container.docker.image "
        "(container images are not supported yet)\"]}]}");
    ASSERT_INT_EQ(cm_app_http_status(CM_EUNSUPPORTED), 422);
    cm_buf_done(&body);
    cm_app_report_done(&rep);
}

TEST(validate_relative_ids_against_base)
{
    struct cm_app_parse_opts o = {.base = "/shop/backend", .features = 0};
    const char *j =
        "{\"id\":\"api\",\"cmd\":\"sleep 1\",\"dependencies\":[\"../db\",\"cache\","
        "\"/abs/x\"]}";
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), &o, &a, NULL));
    ASSERT_STR_EQ(a->id, "/shop/backend/api");
    ASSERT_STR_EQ(a->dependencies[0], "/shop/db");
    ASSERT_STR_EQ(a->dependencies[1], "/shop/backend/cache");
    ASSERT_STR_EQ(a->dependencies[2], "/abs/x");
    cm_app_free(a);
}
