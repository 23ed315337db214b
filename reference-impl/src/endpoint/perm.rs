//! Capabilities and permissions (spec 10, 11): grants, prompts, capability queries and
//! invocations, and their backends.

use super::*;

pub(super) struct Grant {
    pub(super) holder: DeviceId,
    pub(super) capability: String,
    pub(super) scope: Scope,
    pub(super) expires_at: Option<Instant>,
    pub(super) conn_local_id: u32,
    pub(super) used: bool,
    pub(super) revoked: bool,
}

/// A use of an external capability the driver has not completed yet.
pub(super) struct PendingInvocation {
    pub(super) conn_local_id: u32,
    pub(super) req_id: u32,
    pub(super) capability: String,
    pub(super) deadline: Instant,
}

pub(super) struct PendingPrompt {
    pub(super) conn_local_id: u32,
    pub(super) peer: DeviceId,
    pub(super) req_id: u32,
    pub(super) capability: String,
    pub(super) scope: Scope,
    pub(super) duration_s: u32,
    pub(super) deadline: Instant,
}

impl Endpoint {
    pub(super) fn restore_persisted_grants(&mut self) {
        for g in self.trust.grants.clone() {
            if let Some(holder) = DeviceId::from_hex(&g.holder) {
                self.grants.insert(
                    g.grant_id,
                    Grant {
                        holder,
                        capability: g.capability,
                        scope: Scope::UntilRevoked,
                        expires_at: None,
                        conn_local_id: 0,
                        used: false,
                        revoked: false,
                    },
                );
            }
        }
    }

    /// Ask `peer` for a capability list; the answer arrives as [`Event::Capabilities`].
    pub fn query_capabilities(&mut self, now: Instant, peer: DeviceId) -> Result<u32, ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapQuery { req_id },
        );
        Ok(req_id)
    }

    /// Ask `peer` for permission to use `capability`.
    pub fn request_permission(
        &mut self,
        now: Instant,
        peer: DeviceId,
        capability: &str,
        scope: Scope,
        duration_s: u32,
    ) -> Result<u32, ApiError> {
        if capability.is_empty() || capability.len() > 64 {
            return Err(ApiError::InvalidName("capability"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::PermRequest {
                req_id,
                scope,
                duration_s,
                capability: capability.to_string(),
            },
        );
        Ok(req_id)
    }

    /// Use `capability` on `peer` under `grant_id`.
    pub fn invoke(
        &mut self,
        now: Instant,
        peer: DeviceId,
        capability: &str,
        grant_id: u32,
        args: &[u8],
    ) -> Result<u32, ApiError> {
        if capability.is_empty() || capability.len() > 64 {
            return Err(ApiError::InvalidName("capability"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapInvoke {
                req_id,
                grant_id,
                capability: capability.to_string(),
                args: args[..args.len().min(u16::MAX as usize)].to_vec(),
            },
        );
        Ok(req_id)
    }

    /// Answer the use of an external capability announced by [`Event::CapabilityRequest`]:
    /// send its CAP_RESULT with `status` and `result` (at most 65535 bytes are sent; a refusal
    /// or failure may carry a diagnostic text). Errors with [`ApiError::NotFound`] when the
    /// handle is unknown, already completed, timed out ([`Config::backend_timeout`]), or its
    /// connection has ended (a `reset` included): nothing is sent then.
    pub fn complete_invoke(
        &mut self,
        now: Instant,
        handle: u64,
        status: Code,
        result: &[u8],
    ) -> Result<(), ApiError> {
        let p = self
            .invocations
            .remove(&handle)
            .ok_or(ApiError::NotFound("capability invocation"))?;
        self.cap_result(now, p.conn_local_id, p.req_id, status, result.to_vec());
        Ok(())
    }

    /// Revoke a grant we issued; the holder is told with PERM_REVOKE.
    pub fn revoke(&mut self, now: Instant, grant_id: u32) -> Result<(), ApiError> {
        let g = self
            .grants
            .get_mut(&grant_id)
            .ok_or(ApiError::NotFound("grant"))?;
        g.revoked = true;
        let holder = g.holder;
        let persisted = g.scope == Scope::UntilRevoked;
        if persisted {
            self.trust.grants.retain(|p| p.grant_id != grant_id);
            self.events.push_back(Event::TrustStoreChanged);
        }
        if let Some(local_id) = self.conn_of(holder) {
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::PermRevoke { grant_id },
            );
        }
        Ok(())
    }

    /// Answer a pending permission prompt ([`PromptPolicy::Ask`]).
    pub fn answer_prompt(
        &mut self,
        now: Instant,
        prompt_id: u64,
        approve: bool,
    ) -> Result<(), ApiError> {
        let p = self
            .prompts
            .remove(&prompt_id)
            .ok_or(ApiError::NotFound("prompt"))?;
        if approve {
            self.grant(
                now,
                p.conn_local_id,
                p.peer,
                p.req_id,
                &p.capability,
                p.scope,
                p.duration_s,
            );
        } else {
            self.perm_response(now, p.conn_local_id, p.req_id, PermResult::Denied, 0, 0);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_perm_request(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        scope: Scope,
        duration_s: u32,
        capability: String,
    ) {
        if !self.cfg.capabilities.iter().any(|c| c.name == capability) {
            self.perm_response(now, local_id, req_id, PermResult::UnknownCapability, 0, 0);
            return;
        }
        if self.has(Fault::GrantWithoutPrompt) {
            self.grant(now, local_id, peer, req_id, &capability, scope, duration_s);
            return;
        }
        match self.policy {
            PromptPolicy::Approve => {
                self.grant(now, local_id, peer, req_id, &capability, scope, duration_s)
            }
            PromptPolicy::Deny => {
                self.perm_response(now, local_id, req_id, PermResult::Denied, 0, 0)
            }
            PromptPolicy::Timeout | PromptPolicy::Ask => {
                let prompt_id = self.next_prompt;
                self.next_prompt += 1;
                self.prompts.insert(
                    prompt_id,
                    PendingPrompt {
                        conn_local_id: local_id,
                        peer,
                        req_id,
                        capability: capability.clone(),
                        scope,
                        duration_s,
                        deadline: now + self.cfg.prompt_timeout,
                    },
                );
                if self.policy == PromptPolicy::Ask {
                    self.events.push_back(Event::PermissionPrompt {
                        prompt_id,
                        peer,
                        capability,
                        scope,
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn grant(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        capability: &str,
        scope: Scope,
        duration_s: u32,
    ) {
        let mut grant_id = self.rng.gen_range(1..=u32::MAX);
        while self.grants.contains_key(&grant_id) {
            grant_id = self.rng.gen_range(1..=u32::MAX);
        }
        let expires_in_ms = duration_s.saturating_mul(1000);
        self.grants.insert(
            grant_id,
            Grant {
                holder: peer,
                capability: capability.to_string(),
                scope,
                expires_at: (duration_s > 0)
                    .then(|| now + Duration::from_millis(expires_in_ms as u64)),
                conn_local_id: local_id,
                used: false,
                revoked: false,
            },
        );
        if scope == Scope::UntilRevoked && duration_s == 0 {
            self.trust.grants.push(PersistedGrant {
                grant_id,
                holder: peer.to_hex(),
                capability: capability.to_string(),
            });
            self.events.push_back(Event::TrustStoreChanged);
        }
        self.perm_response(
            now,
            local_id,
            req_id,
            PermResult::Granted,
            grant_id,
            expires_in_ms,
        );
    }

    pub(super) fn perm_response(
        &mut self,
        now: Instant,
        local_id: u32,
        req_id: u32,
        result: PermResult,
        grant_id: u32,
        expires_in_ms: u32,
    ) {
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_invoke(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        grant_id: u32,
        capability: String,
        args: Vec<u8>,
    ) {
        let status = if !self.cfg.capabilities.iter().any(|c| c.name == capability) {
            Code::UnknownCapability
        } else {
            let ignore_revocation = self.has(Fault::IgnoreRevocation);
            let ignore_expiry = self.has(Fault::IgnoreExpiry);
            let not_bound = self.has(Fault::GrantNotBound);
            match self.grants.get_mut(&grant_id) {
                None => Code::PermissionDenied,
                Some(g) if g.holder != peer && !not_bound => Code::PermissionDenied,
                Some(g) if g.capability != capability => Code::PermissionDenied,
                Some(g) if g.revoked && !ignore_revocation => Code::GrantRevoked,
                Some(g) if g.expires_at.is_some_and(|t| now >= t) && !ignore_expiry => {
                    Code::GrantExpired
                }
                Some(g) if g.scope == Scope::Once && g.used => Code::PermissionDenied,
                Some(g) if g.scope == Scope::Session && g.conn_local_id != local_id => {
                    Code::PermissionDenied
                }
                Some(g) => {
                    g.used = true;
                    Code::Ok
                }
            }
        };
        if status != Code::Ok {
            // A refused use never reaches a backend (spec 11.4, CAP-8).
            return self.cap_result(now, local_id, req_id, status, Vec::new());
        }
        self.events.push_back(Event::CapabilityUsed {
            peer,
            capability: capability.clone(),
            grant_id,
        });
        if self.cfg.external_capabilities.contains(&capability) {
            let handle = self.next_invocation;
            self.next_invocation += 1;
            self.invocations.insert(
                handle,
                PendingInvocation {
                    conn_local_id: local_id,
                    req_id,
                    capability: capability.clone(),
                    deadline: now + self.cfg.backend_timeout,
                },
            );
            self.events.push_back(Event::CapabilityRequest {
                handle,
                peer,
                capability,
                args,
            });
        } else {
            // A simulated capability: a use returns its arguments.
            self.cap_result(now, local_id, req_id, Code::Ok, args);
        }
    }

    pub(super) fn cap_result(
        &mut self,
        now: Instant,
        local_id: u32,
        req_id: u32,
        status: Code,
        result: Vec<u8>,
    ) {
        let mut result = result;
        result.truncate(u16::MAX as usize);
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapResult {
                req_id,
                status,
                result,
            },
        );
    }
}
