//! App Mesh resource specs, field by field as the App Mesh API (2019-01-25) spells them. Every
//! struct refuses unknown fields, so a typo is an error that names the field rather than a setting
//! silently ignored. Numbers are read as `i64` and range-checked by `validate`, so that an
//! out-of-range value gets App Mesh's rule in its message instead of a type error.
use serde::Deserialize;

// === General types ===

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Duration {
    pub unit: DurationUnit,
    pub value: i64,
}

impl Duration {
    /// Milliseconds (negative values are refused by validation; 0 here).
    pub fn millis(&self) -> u64 {
        let v = u64::try_from(self.value).unwrap_or(0);
        match self.unit {
            DurationUnit::S => v.saturating_mul(1000),
            DurationUnit::Ms => v,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum DurationUnit {
    #[serde(rename = "s")]
    S,
    #[serde(rename = "ms")]
    Ms,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Http => "http",
            PortProtocol::Http2 => "http2",
            PortProtocol::Grpc => "grpc",
            PortProtocol::Tcp => "tcp",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub port: i64,
    pub protocol: PortProtocol,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum IpPreference {
    #[serde(rename = "IPv4_PREFERRED")]
    Ipv4Preferred,
    #[serde(rename = "IPv6_PREFERRED")]
    Ipv6Preferred,
    #[serde(rename = "IPv4_ONLY")]
    Ipv4Only,
    #[serde(rename = "IPv6_ONLY")]
    Ipv6Only,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatchMethod {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub regex: Option<String>,
    pub range: Option<MatchRange>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchRange {
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    pub name: String,
    #[serde(rename = "match")]
    pub r#match: Option<HeaderMatchMethod>,
    #[serde(default)]
    pub invert: bool,
}

// === Mesh ===

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshSpec {
    pub egress_filter: Option<EgressFilter>,
    pub service_discovery: Option<MeshServiceDiscovery>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressFilter {
    #[serde(rename = "type")]
    pub r#type: EgressFilterType,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EgressFilterType {
    AllowAll,
    DropAll,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshServiceDiscovery {
    pub ip_preference: Option<IpPreference>,
}

// === VirtualNode ===

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualNodeSpec {
    #[serde(default)]
    pub listeners: Vec<NodeListener>,
    pub service_discovery: Option<ServiceDiscovery>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    pub backend_defaults: Option<BackendDefaults>,
    pub logging: Option<Logging>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeListener {
    pub port_mapping: PortMapping,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub connection_pool: Option<ConnectionPool>,
    pub tls: Option<ListenerTls>,
    pub timeout: Option<ListenerTimeout>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    pub protocol: PortProtocol,
    pub path: Option<String>,
    pub port: Option<i64>,
    pub healthy_threshold: i64,
    pub unhealthy_threshold: i64,
    pub interval_millis: i64,
    pub timeout_millis: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    pub max_server_errors: i64,
    pub interval: Duration,
    pub base_ejection_duration: Duration,
    pub max_ejection_percent: i64,
}

/// A union: exactly one member, matching the listener's protocol.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionPool {
    pub tcp: Option<TcpPool>,
    pub http: Option<HttpPool>,
    pub http2: Option<RequestPool>,
    pub grpc: Option<RequestPool>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpPool {
    pub max_connections: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPool {
    pub max_connections: i64,
    pub max_pending_requests: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestPool {
    pub max_requests: i64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    Strict,
    Permissive,
    Disabled,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTls {
    pub mode: TlsMode,
    pub certificate: ListenerTlsCertificate,
    pub validation: Option<TlsValidation>,
}

/// A union: `acm`, `file` or `sds`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTlsCertificate {
    pub acm: Option<AcmCertificate>,
    pub file: Option<FileCertificate>,
    pub sds: Option<SdsSecret>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcmCertificate {
    pub certificate_arn: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileCertificate {
    pub certificate_chain: String,
    pub private_key: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SdsSecret {
    pub secret_name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsValidation {
    pub trust: TlsTrust,
    pub subject_alternative_names: Option<SubjectAlternativeNames>,
}

/// A union: `acm` (client policies only), `file` or `sds`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsTrust {
    pub acm: Option<AcmTrust>,
    pub file: Option<FileTrust>,
    pub sds: Option<SdsSecret>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcmTrust {
    pub certificate_authority_arns: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileTrust {
    pub certificate_chain: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectAlternativeNames {
    #[serde(rename = "match")]
    pub r#match: SanMatch,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SanMatch {
    pub exact: Vec<String>,
}

/// A union: the member must match the listener's protocol.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTimeout {
    pub http: Option<HttpTimeout>,
    pub http2: Option<HttpTimeout>,
    pub grpc: Option<HttpTimeout>,
    pub tcp: Option<TcpTimeout>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpTimeout {
    pub per_request: Option<Duration>,
    pub idle: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpTimeout {
    pub idle: Option<Duration>,
}

/// A union: `dns` or `awsCloudMap`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceDiscovery {
    pub dns: Option<DnsDiscovery>,
    pub aws_cloud_map: Option<CloudMapDiscovery>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsDiscovery {
    pub hostname: String,
    pub response_type: Option<DnsResponseType>,
    pub ip_preference: Option<IpPreference>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsResponseType {
    Loadbalancer,
    Endpoints,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudMapDiscovery {
    pub namespace_name: String,
    pub service_name: String,
    #[serde(default)]
    pub attributes: Vec<CloudMapAttribute>,
    pub ip_preference: Option<IpPreference>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudMapAttribute {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    pub virtual_service: Option<VirtualServiceBackend>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceBackend {
    pub virtual_service_name: String,
    pub client_policy: Option<ClientPolicy>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendDefaults {
    pub client_policy: Option<ClientPolicy>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientPolicy {
    pub tls: Option<ClientPolicyTls>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientPolicyTls {
    /// App Mesh's default is true.
    pub enforce: Option<bool>,
    #[serde(default)]
    pub ports: Vec<i64>,
    pub certificate: Option<ClientTlsCertificate>,
    pub validation: TlsValidation,
}

/// A union: `file` or `sds`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTlsCertificate {
    pub file: Option<FileCertificate>,
    pub sds: Option<SdsSecret>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    pub access_log: Option<AccessLog>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLog {
    pub file: Option<FileAccessLog>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileAccessLog {
    pub path: String,
    pub format: Option<LoggingFormat>,
}

/// A union: `text` or `json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingFormat {
    pub text: Option<String>,
    pub json: Option<Vec<JsonFormatRef>>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JsonFormatRef {
    pub key: String,
    pub value: String,
}

// === VirtualRouter and Route ===

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualRouterSpec {
    #[serde(default)]
    pub listeners: Vec<RouterListener>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouterListener {
    pub port_mapping: PortMapping,
}

/// Exactly one of the four route kinds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSpec {
    pub priority: Option<i64>,
    pub http_route: Option<HttpRoute>,
    pub http2_route: Option<HttpRoute>,
    pub grpc_route: Option<GrpcRoute>,
    pub tcp_route: Option<TcpRoute>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(rename = "match")]
    pub r#match: HttpRouteMatch,
    pub action: RouteAction,
    pub retry_policy: Option<RetryPolicy>,
    pub timeout: Option<HttpTimeout>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteMatch {
    pub prefix: Option<String>,
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    pub method: Option<HttpMethod>,
    pub scheme: Option<HttpScheme>,
    #[serde(default)]
    pub query_parameters: Vec<QueryParameterMatch>,
    pub port: Option<i64>,
}

/// A union: `exact` or `regex`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPathMatch {
    pub exact: Option<String>,
    pub regex: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Patch => "PATCH",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    Http,
    Https,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryParameterMatch {
    pub name: String,
    #[serde(rename = "match")]
    pub r#match: Option<QueryParameterValue>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryParameterValue {
    pub exact: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteAction {
    pub weighted_targets: Vec<WeightedTarget>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedTarget {
    pub virtual_node: String,
    pub weight: i64,
    pub port: Option<i64>,
}

/// HTTP, HTTP/2 and gRPC retry policies (gRPC events only on gRPC routes).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryPolicy {
    pub max_retries: i64,
    pub per_retry_timeout: Duration,
    #[serde(default)]
    pub http_retry_events: Vec<String>,
    #[serde(default)]
    pub tcp_retry_events: Vec<String>,
    #[serde(default)]
    pub grpc_retry_events: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcRoute {
    #[serde(rename = "match")]
    pub r#match: GrpcRouteMatch,
    pub action: RouteAction,
    pub retry_policy: Option<RetryPolicy>,
    pub timeout: Option<HttpTimeout>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    pub service_name: Option<String>,
    pub method_name: Option<String>,
    #[serde(default)]
    pub metadata: Vec<HeaderMatch>,
    pub port: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(rename = "match")]
    pub r#match: Option<TcpRouteMatch>,
    pub action: RouteAction,
    pub timeout: Option<TcpTimeout>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRouteMatch {
    pub port: Option<i64>,
}

// === VirtualService ===

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub provider: Option<VirtualServiceProvider>,
}

/// A union: `virtualNode` or `virtualRouter`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceProvider {
    pub virtual_node: Option<NodeProvider>,
    pub virtual_router: Option<RouterProvider>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeProvider {
    pub virtual_node_name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouterProvider {
    pub virtual_router_name: String,
}

// === VirtualGateway and GatewayRoute ===

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualGatewaySpec {
    #[serde(default)]
    pub listeners: Vec<GatewayListener>,
    pub logging: Option<Logging>,
    pub backend_defaults: Option<BackendDefaults>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayListener {
    pub port_mapping: PortMapping,
    pub health_check: Option<HealthCheck>,
    pub connection_pool: Option<ConnectionPool>,
    pub tls: Option<ListenerTls>,
}

/// Exactly one of the three gateway route kinds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayRouteSpec {
    pub priority: Option<i64>,
    pub http_route: Option<HttpGatewayRoute>,
    pub http2_route: Option<HttpGatewayRoute>,
    pub grpc_route: Option<GrpcGatewayRoute>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGatewayRoute {
    #[serde(rename = "match")]
    pub r#match: HttpGatewayRouteMatch,
    pub action: HttpGatewayRouteAction,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGatewayRouteMatch {
    pub prefix: Option<String>,
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub query_parameters: Vec<QueryParameterMatch>,
    pub method: Option<HttpMethod>,
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    pub port: Option<i64>,
    pub hostname: Option<HostnameMatch>,
}

/// A union: `exact` or `suffix`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostnameMatch {
    pub exact: Option<String>,
    pub suffix: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGatewayRouteAction {
    pub target: GatewayRouteTarget,
    pub rewrite: Option<HttpGatewayRouteRewrite>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayRouteTarget {
    pub virtual_service: GatewayRouteVirtualService,
    pub port: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayRouteVirtualService {
    pub virtual_service_name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGatewayRouteRewrite {
    pub hostname: Option<HostnameRewrite>,
    pub prefix: Option<PrefixRewrite>,
    pub path: Option<PathRewrite>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostnameRewrite {
    pub default_target_hostname: Option<Toggle>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefixRewrite {
    pub default_prefix: Option<Toggle>,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathRewrite {
    pub exact: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Toggle {
    Enabled,
    Disabled,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcGatewayRoute {
    #[serde(rename = "match")]
    pub r#match: GrpcGatewayRouteMatch,
    pub action: GrpcGatewayRouteAction,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcGatewayRouteMatch {
    pub service_name: Option<String>,
    pub hostname: Option<HostnameMatch>,
    #[serde(default)]
    pub metadata: Vec<HeaderMatch>,
    pub port: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcGatewayRouteAction {
    pub target: GatewayRouteTarget,
    pub rewrite: Option<GrpcGatewayRouteRewrite>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcGatewayRouteRewrite {
    pub hostname: Option<HostnameRewrite>,
}
