//! Virtual node rules, and the listener and client-policy rules that gateways share.
use super::At;
use crate::model::{
    ClientPolicy, ConnectionPool, HealthCheck, ListenerTls, Logging, PortProtocol, TlsValidation,
    VirtualNodeSpec,
};

impl<S> At<'_, '_, S> {
    pub(super) fn health_check(&mut self, f: &str, h: &HealthCheck, listener_port: i64) {
        self.range(&format!("{f}.healthyThreshold"), h.healthy_threshold, 2, 10);
        self.range(
            &format!("{f}.unhealthyThreshold"),
            h.unhealthy_threshold,
            2,
            10,
        );
        self.range(
            &format!("{f}.intervalMillis"),
            h.interval_millis,
            5000,
            300_000,
        );
        self.range(
            &format!("{f}.timeoutMillis"),
            h.timeout_millis,
            2000,
            60_000,
        );
        if let Some(p) = h.port
            && p != listener_port
        {
            self.err(
                &format!("{f}.port"),
                format!("{p} must be the listener's port ({listener_port})"),
            );
        }
        match (&h.path, h.protocol) {
            (None, PortProtocol::Http | PortProtocol::Http2) => self.err(
                f,
                format!(
                    "path is required for an {} health check",
                    h.protocol.as_str()
                ),
            ),
            (Some(p), _) if !p.starts_with('/') => {
                self.err(&format!("{f}.path"), format!("{p:?} must start with '/'"));
            }
            _ => {}
        }
    }

    /// `tcp` allowed on virtual node listeners only.
    pub(super) fn connection_pool(
        &mut self,
        f: &str,
        p: &ConnectionPool,
        protocol: PortProtocol,
        tcp_allowed: bool,
    ) {
        let mut members = vec![
            ("http", p.http.is_some()),
            ("http2", p.http2.is_some()),
            ("grpc", p.grpc.is_some()),
        ];
        if tcp_allowed {
            members.insert(0, ("tcp", p.tcp.is_some()));
        } else if p.tcp.is_some() {
            self.err(
                &format!("{f}.tcp"),
                "a virtual gateway has no tcp connection pool",
            );
            return;
        }
        if !self.one_of(f, &members) {
            return;
        }
        let given = members
            .iter()
            .find(|(_, s)| *s)
            .map(|(n, _)| *n)
            .unwrap_or_default();
        if given != protocol.as_str() {
            self.err(
                &format!("{f}.{given}"),
                format!(
                    "a {given} connection pool on a {} listener: the pool must match the listener's protocol",
                    protocol.as_str()
                ),
            );
            return;
        }
        if let Some(t) = &p.tcp {
            self.at_least(&format!("{f}.tcp.maxConnections"), t.max_connections, 1);
        }
        if let Some(h) = &p.http {
            self.at_least(&format!("{f}.http.maxConnections"), h.max_connections, 1);
            if let Some(m) = h.max_pending_requests {
                self.at_least(&format!("{f}.http.maxPendingRequests"), m, 1);
            }
        }
        for (k, r) in [("http2", &p.http2), ("grpc", &p.grpc)] {
            if let Some(r) = r {
                self.at_least(&format!("{f}.{k}.maxRequests"), r.max_requests, 1);
            }
        }
    }

    pub(super) fn listener_tls(&mut self, f: &str, t: &ListenerTls, acm_trust_allowed: bool) {
        let c = &t.certificate;
        let cf = format!("{f}.certificate");
        if self.one_of(
            &cf,
            &[
                ("acm", c.acm.is_some()),
                ("file", c.file.is_some()),
                ("sds", c.sds.is_some()),
            ],
        ) {
            if let Some(a) = &c.acm {
                self.length(
                    &format!("{cf}.acm.certificateArn"),
                    &a.certificate_arn,
                    1,
                    2048,
                );
            }
            if let Some(file) = &c.file {
                self.length(
                    &format!("{cf}.file.certificateChain"),
                    &file.certificate_chain,
                    1,
                    255,
                );
                self.length(&format!("{cf}.file.privateKey"), &file.private_key, 1, 255);
            }
            if let Some(s) = &c.sds {
                self.length(&format!("{cf}.sds.secretName"), &s.secret_name, 1, 255);
            }
        }
        if let Some(v) = &t.validation {
            if v.trust.acm.is_some() && !acm_trust_allowed {
                self.err(
                    &format!("{f}.validation.trust.acm"),
                    "a virtual node listener validates client certificates with file or sds trust only",
                );
            } else {
                self.tls_validation(&format!("{f}.validation"), v, false);
            }
        }
    }

    pub(super) fn tls_validation(&mut self, f: &str, v: &TlsValidation, enforce: bool) {
        let tf = format!("{f}.trust");
        let t = &v.trust;
        if self.one_of(
            &tf,
            &[
                ("acm", t.acm.is_some()),
                ("file", t.file.is_some()),
                ("sds", t.sds.is_some()),
            ],
        ) {
            if let Some(a) = &t.acm {
                let n = a.certificate_authority_arns.len();
                if !(1..=3).contains(&n) {
                    self.err(
                        &format!("{tf}.acm.certificateAuthorityArns"),
                        format!("has {n} items: 1..3 certificate authority ARNs are allowed"),
                    );
                }
            }
            if let Some(file) = &t.file {
                self.length(
                    &format!("{tf}.file.certificateChain"),
                    &file.certificate_chain,
                    1,
                    255,
                );
            }
            if let Some(s) = &t.sds {
                self.length(&format!("{tf}.sds.secretName"), &s.secret_name, 1, 255);
            }
        }
        if let Some(sans) = &v.subject_alternative_names {
            let sf = format!("{f}.subjectAlternativeNames.match.exact");
            if sans.r#match.exact.is_empty() {
                self.err(&sf, "needs at least one name");
            }
            for (i, name) in sans.r#match.exact.iter().enumerate() {
                let nf = format!("{sf}[{i}]");
                if self.length(&nf, name, 1, 254) && enforce && name.contains('*') {
                    self.err(
                        &nf,
                        format!("{name:?}: wildcard subject alternative names are rejected when TLS is enforced"),
                    );
                }
            }
        }
    }

    pub(super) fn client_policy(&mut self, f: &str, c: &ClientPolicy) {
        let Some(t) = &c.tls else { return };
        let f = format!("{f}.tls");
        for (i, p) in t.ports.iter().enumerate() {
            self.port(&format!("{f}.ports[{i}]"), *p);
        }
        if let Some(cert) = &t.certificate {
            let cf = format!("{f}.certificate");
            if self.one_of(
                &cf,
                &[("file", cert.file.is_some()), ("sds", cert.sds.is_some())],
            ) {
                if let Some(file) = &cert.file {
                    self.length(
                        &format!("{cf}.file.certificateChain"),
                        &file.certificate_chain,
                        1,
                        255,
                    );
                    self.length(&format!("{cf}.file.privateKey"), &file.private_key, 1, 255);
                }
                if let Some(s) = &cert.sds {
                    self.length(&format!("{cf}.sds.secretName"), &s.secret_name, 1, 255);
                }
            }
        }
        self.tls_validation(
            &format!("{f}.validation"),
            &t.validation,
            t.enforce.unwrap_or(true),
        );
    }

    pub(super) fn logging(&mut self, f: &str, l: &Logging) {
        let Some(a) = &l.access_log else { return };
        let Some(file) = &a.file else {
            self.err(&format!("{f}.accessLog"), "needs file");
            return;
        };
        let f = format!("{f}.accessLog.file");
        self.length(&format!("{f}.path"), &file.path, 1, 255);
        let Some(fmt) = &file.format else { return };
        let ff = format!("{f}.format");
        if !self.one_of(
            &ff,
            &[("text", fmt.text.is_some()), ("json", fmt.json.is_some())],
        ) {
            return;
        }
        if let Some(t) = &fmt.text {
            self.length(&format!("{ff}.text"), t, 1, 1000);
        }
        if let Some(j) = &fmt.json {
            if j.is_empty() {
                self.err(&format!("{ff}.json"), "needs at least one key and value");
            }
            for (i, kv) in j.iter().enumerate() {
                self.length(&format!("{ff}.json[{i}].key"), &kv.key, 1, 100);
                self.length(&format!("{ff}.json[{i}].value"), &kv.value, 1, 100);
            }
        }
    }
}

impl At<'_, '_, VirtualNodeSpec> {
    pub(super) fn node(&mut self) {
        self.name_length();
        let spec = &self.res.spec;
        self.port_mappings(
            "spec.listeners",
            spec.listeners.iter().map(|l| &l.port_mapping),
        );
        for (i, l) in spec.listeners.iter().enumerate() {
            let f = format!("spec.listeners[{i}]");
            let protocol = l.port_mapping.protocol;
            if let Some(h) = &l.health_check {
                self.health_check(&format!("{f}.healthCheck"), h, l.port_mapping.port);
            }
            if let Some(o) = &l.outlier_detection {
                let of = format!("{f}.outlierDetection");
                self.at_least(&format!("{of}.maxServerErrors"), o.max_server_errors, 1);
                self.range(
                    &format!("{of}.maxEjectionPercent"),
                    o.max_ejection_percent,
                    0,
                    100,
                );
                self.duration(&format!("{of}.interval"), &o.interval);
                self.duration(
                    &format!("{of}.baseEjectionDuration"),
                    &o.base_ejection_duration,
                );
            }
            if let Some(p) = &l.connection_pool {
                self.connection_pool(&format!("{f}.connectionPool"), p, protocol, true);
            }
            if let Some(t) = &l.tls {
                self.listener_tls(&format!("{f}.tls"), t, false);
            }
            if let Some(t) = &l.timeout {
                let tf = format!("{f}.timeout");
                let members = [
                    ("http", t.http.is_some()),
                    ("http2", t.http2.is_some()),
                    ("grpc", t.grpc.is_some()),
                    ("tcp", t.tcp.is_some()),
                ];
                if self.one_of(&tf, &members) {
                    let given = members
                        .iter()
                        .find(|(_, s)| *s)
                        .map(|(n, _)| *n)
                        .unwrap_or_default();
                    if given != protocol.as_str() {
                        self.err(
                            &format!("{tf}.{given}"),
                            format!(
                                "a {given} timeout on a {} listener: the timeout must match the listener's protocol",
                                protocol.as_str()
                            ),
                        );
                    }
                    for (k, h) in [("http", &t.http), ("http2", &t.http2), ("grpc", &t.grpc)] {
                        if let Some(h) = h {
                            self.opt_duration(
                                &format!("{tf}.{k}.perRequest"),
                                h.per_request.as_ref(),
                            );
                            self.opt_duration(&format!("{tf}.{k}.idle"), h.idle.as_ref());
                        }
                    }
                    if let Some(t) = &t.tcp {
                        self.opt_duration(&format!("{tf}.tcp.idle"), t.idle.as_ref());
                    }
                }
            }
        }
        match &spec.service_discovery {
            None if !spec.listeners.is_empty() => self.err(
                "spec.serviceDiscovery",
                "is required when the node has listeners (how else would clients find it?)",
            ),
            None => {}
            Some(sd) => {
                let f = "spec.serviceDiscovery";
                if self.one_of(
                    f,
                    &[
                        ("dns", sd.dns.is_some()),
                        ("awsCloudMap", sd.aws_cloud_map.is_some()),
                    ],
                ) {
                    if let Some(d) = &sd.dns {
                        self.length(&format!("{f}.dns.hostname"), &d.hostname, 1, 253);
                    }
                    if let Some(c) = &sd.aws_cloud_map {
                        self.length(
                            &format!("{f}.awsCloudMap.namespaceName"),
                            &c.namespace_name,
                            1,
                            1024,
                        );
                        self.length(
                            &format!("{f}.awsCloudMap.serviceName"),
                            &c.service_name,
                            1,
                            1024,
                        );
                    }
                }
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, b) in spec.backends.iter().enumerate() {
            let f = format!("spec.backends[{i}]");
            let Some(vs) = &b.virtual_service else {
                self.err(&f, "needs virtualService");
                continue;
            };
            let name = vs.virtual_service_name.as_str();
            let nf = format!("{f}.virtualService.virtualServiceName");
            if seen.contains(&name) {
                self.err(&nf, format!("{name:?} is listed twice"));
            }
            seen.push(name);
            self.virtual_service_exists(&nf, name);
            if let Some(c) = &vs.client_policy {
                self.client_policy(&format!("{f}.virtualService.clientPolicy"), c);
            }
        }
        if let Some(c) = spec
            .backend_defaults
            .as_ref()
            .and_then(|d| d.client_policy.as_ref())
        {
            self.client_policy("spec.backendDefaults.clientPolicy", c);
        }
        if let Some(l) = &spec.logging {
            self.logging("spec.logging", l);
        }
    }
}
