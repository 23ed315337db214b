--[[
SoftBus v1 dissector for Wireshark and tshark (Wireshark 3.6 and later; tested with 4.0).

What it shows (spec conformance/spec/softbus-v1.md):
  * the 6-byte frame header (section 2.3) and every frame type's body (2.4): PAIR_REQUEST,
    PAIR_RESPONSE, PAIR_CONFIRM, PAIR_RESULT, HANDSHAKE_1/2/3 (with the Noise message split into
    its tokens), HANDSHAKE_REJECT (code names) and RECORD (epoch, seq, ciphertext, tag);
  * with a key log, every RECORD decrypted (AES-256-GCM, section 7.2; rekeyed epochs derived as
    in 7.4), the GCM tag checked, and the inner message dissected (sections 8 to 13): type, rseq
    and each body field, with code, kind, QoS, scope and result names. CAP_LIST bodies are handed
    to Wireshark's CBOR dissector.

Where it listens:
  * UDP and TCP on the ports of the preference "SoftBus ports" (default 5700); on TCP, frames are
    reassembled from their u16 length prefix (section 2.1);
  * any other port through "Decode As..." (UDP: SOFTBUS, TCP: SOFTBUS_TCP);
  * a heuristic on every UDP datagram and TCP segment (can be turned off as "softbus_udp" and
    "softbus_tcp_tcp" in Enabled Protocols, or both with the preference "heuristic"): version
    0x01, a known frame type and a body length that section 2.4 allows for that type (on TCP,
    after a matching length prefix at the start of the segment).

Decryption:
  Set the preference "Key log file" (softbus.keylog_file) to a file with one line per direction:
      SOFTBUS_KEY <conn_id: 8 hex digits> <AES-256-GCM key: 64 hex digits>
  where conn_id is the receiver's connection ID, as in the header of the RECORDs that key
  protects. The conformance harness writes exactly this file as cases/<ID>/keys.log next to
  capture.pcap. Lines starting with '#' and other lines are ignored.

  Wireshark 4.0's Lua has no cipher bindings, so AES-256 and GHASH are implemented here in pure
  Lua (checked against FIPS-197 and the GCM specification's test vectors when the script loads);
  the tag is verified by default (preference "Verify GCM tags"). Where Wireshark offers
  GcryptCipher (4.4 and later) and it passes the same self-test, it is used for the AES blocks.

Use:
  tshark -X lua_script:tools/wireshark/softbus.lua -o softbus.keylog_file:cases/ID/keys.log \
         -r cases/ID/capture.pcap -V
  or copy this file into Wireshark's personal Lua plugins folder
  (Help > About Wireshark > Folders > Personal Lua Plugins).
--]]

local PLUGIN_VERSION = "1.0.0"
if set_plugin_info then
    set_plugin_info({
        version = PLUGIN_VERSION,
        description = "SoftBus v1 (frames, handshake, decrypted records)",
        repository = "tools/wireshark/softbus.lua in the SoftBus conformance kit",
    })
end

local bit = bit32 or bit
local band, bor, bxor = bit.band, bit.bor, bit.bxor
local lshift, rshift = bit.lshift, bit.rshift

-----------------------------------------------------------------------------------------------
-- Name tables (spec 2.4, 9.1, 11.1, 13.1, 13.2)
-----------------------------------------------------------------------------------------------

local FRAME_TYPES = {
    [0x01] = "PAIR_REQUEST",
    [0x02] = "PAIR_RESPONSE",
    [0x03] = "PAIR_CONFIRM",
    [0x04] = "PAIR_RESULT",
    [0x10] = "HANDSHAKE_1",
    [0x11] = "HANDSHAKE_2",
    [0x12] = "HANDSHAKE_3",
    [0x1F] = "HANDSHAKE_REJECT",
    [0x20] = "RECORD",
}

-- Allowed body lengths per frame type: {min, max}.
local BODY_LEN = {
    [0x01] = { 69, 69 },
    [0x02] = { 101, 101 },
    [0x03] = { 36, 36 },
    [0x04] = { 38, 38 },
    [0x10] = { 36, 1028 },
    [0x11] = { 36, 1028 },
    [0x12] = { 32, 1024 },
    [0x1F] = { 2, 2 },
    [0x20] = { 25, 65535 },
}

local CODES = {
    [0] = "OK",
    [1] = "PROTOCOL_VIOLATION",
    [2] = "MALFORMED",
    [3] = "UNSUPPORTED_VERSION",
    [4] = "UNKNOWN_PEER",
    [5] = "PAIRING_FAILED",
    [6] = "RATE_LIMITED",
    [7] = "UNKNOWN_SERVICE",
    [8] = "MESSAGE_TOO_LARGE",
    [9] = "PERMISSION_DENIED",
    [10] = "PROMPT_TIMEOUT",
    [11] = "UNKNOWN_CAPABILITY",
    [12] = "GRANT_REVOKED",
    [13] = "GRANT_EXPIRED",
    [14] = "PEER_LOST",
    [15] = "NORMAL_CLOSE",
    [16] = "TOO_MANY_SESSIONS",
    [17] = "UNKNOWN_SESSION",
    [18] = "INTERNAL",
}

local MSG_TYPES = {
    [0x01] = "HEARTBEAT",
    [0x02] = "CLOSE",
    [0x03] = "ACK",
    [0x04] = "ERROR",
    [0x10] = "SESSION_OPEN",
    [0x11] = "SESSION_ACCEPT",
    [0x12] = "SESSION_REJECT",
    [0x13] = "SESSION_CLOSE",
    [0x14] = "DATA",
    [0x20] = "CAP_QUERY",
    [0x21] = "CAP_LIST",
    [0x30] = "PERM_REQUEST",
    [0x31] = "PERM_RESPONSE",
    [0x32] = "PERM_REVOKE",
    [0x33] = "CAP_INVOKE",
    [0x34] = "CAP_RESULT",
}

local KINDS = { [1] = "message", [2] = "bytes", [3] = "stream" }
local QOS = { [0] = "background", [1] = "best-effort", [2] = "interactive", [3] = "realtime" }
local SCOPES = { [1] = "once", [2] = "session", [3] = "until-revoked" }
local PERM_RESULTS = { [0] = "granted", [1] = "denied", [2] = "timeout", [3] = "unknown capability" }
local SPAKE_SIDES = { [0x41] = "A (initiator)", [0x42] = "B (responder)" }
local TAG_STATUS = {
    [0] = "no key in the key log",
    [1] = "verified",
    [2] = "FAILED (wrong key, tampered or corrupted)",
    [3] = "not verified (verification turned off)",
}

local function code_name(c)
    return CODES[c] or string.format("unknown code %d", c)
end

-----------------------------------------------------------------------------------------------
-- Protocol, preferences and fields
-----------------------------------------------------------------------------------------------

local softbus = Proto("softbus", "SoftBus v1")
local softbus_tcp = Proto("softbus_tcp", "SoftBus v1 over TCP")
-- Zigbee and BLE links, which packet capture cannot see: the harness writes the datagrams the
-- tester's link carried to link.pcap (LINKTYPE_USER0), each after one direction byte.
local softbus_link = Proto("softbus_link", "SoftBus link trace")
local f_link_dir = ProtoField.uint8("softbus_link.direction", "Direction", base.DEC,
    { [0] = "tester to DUT", [1] = "DUT to tester" })
softbus_link.fields = { f_link_dir }

local DEFAULT_PORTS = "5700"
softbus.prefs.ports = Pref.range("SoftBus ports", DEFAULT_PORTS,
    "UDP and TCP ports dissected as SoftBus (others: Decode As, or the heuristics)", 65535)
softbus.prefs.heuristic = Pref.bool("Heuristics on all UDP and TCP ports", true,
    "Recognise SoftBus frames on any port by version, frame type and body length")
softbus.prefs.keylog_file = Pref.string("Key log file", "",
    "File of 'SOFTBUS_KEY <conn_id hex8> <key hex64>' lines (the harness's cases/<ID>/keys.log)")
softbus.prefs.verify_tag = Pref.bool("Verify GCM tags", true,
    "Check each RECORD's AES-GCM tag (turn off to decrypt faster, without authentication)")

local F = {}
local function field(key, pf)
    F[key] = pf
end

-- Header.
field("version", ProtoField.uint8("softbus.version", "Version", base.HEX))
field("frame_type", ProtoField.uint8("softbus.frame_type", "Frame type", base.HEX, FRAME_TYPES))
field("conn_id", ProtoField.uint32("softbus.conn_id", "Receiver conn_id", base.HEX))
field("length", ProtoField.uint16("softbus.length", "Length prefix (TCP)", base.DEC))
-- Pairing.
field("pairing_id", ProtoField.uint32("softbus.pairing_id", "Pairing ID", base.HEX))
field("static_key", ProtoField.bytes("softbus.static_key", "Static public key"))
field("spake_msg", ProtoField.bytes("softbus.spake2.msg", "SPAKE2 message"))
field("spake_side", ProtoField.uint8("softbus.spake2.side", "Side", base.HEX, SPAKE_SIDES))
field("spake_point", ProtoField.bytes("softbus.spake2.point", "Element"))
field("confirm", ProtoField.bytes("softbus.confirm", "Key confirmation"))
field("status", ProtoField.uint16("softbus.status", "Status", base.DEC, CODES))
field("mac", ProtoField.bytes("softbus.mac", "MAC"))
-- Handshake.
field("sender_conn_id", ProtoField.uint32("softbus.sender_conn_id", "Sender conn_id", base.HEX))
field("noise", ProtoField.bytes("softbus.noise", "Noise message"))
field("noise_e", ProtoField.bytes("softbus.noise.e", "Ephemeral public key (e)"))
field("noise_s", ProtoField.bytes("softbus.noise.s", "Encrypted static key (s + tag)"))
field("noise_payload", ProtoField.bytes("softbus.noise.payload", "Payload"))
field("noise_payload_enc", ProtoField.bytes("softbus.noise.payload_enc", "Encrypted HELLO (+ tag)"))
field("reject_code", ProtoField.uint16("softbus.reject_code", "Reject code", base.DEC, CODES))
field("role", ProtoField.string("softbus.role", "Direction"))
-- Record.
field("epoch", ProtoField.uint8("softbus.epoch", "Epoch", base.DEC))
field("seq", ProtoField.uint64("softbus.seq", "Sequence number", base.DEC))
field("ciphertext", ProtoField.bytes("softbus.ciphertext", "Ciphertext"))
field("tag", ProtoField.bytes("softbus.tag", "GCM tag"))
field("tag_status", ProtoField.uint8("softbus.tag_status", "Tag", base.DEC, TAG_STATUS))
field("decrypted", ProtoField.bool("softbus.decrypted", "Decrypted"))
field("key_rekeys", ProtoField.uint8("softbus.key_rekeys", "Rekeys applied to the logged key", base.DEC))
-- Inner message.
field("msg", ProtoField.bytes("softbus.msg", "Inner message"))
field("msg_type", ProtoField.uint8("softbus.msg.type", "Message type", base.HEX, MSG_TYPES))
field("rseq", ProtoField.uint32("softbus.msg.rseq", "Reliable seq (rseq)", base.DEC))
field("msg_body", ProtoField.bytes("softbus.msg.body", "Body"))
field("code", ProtoField.uint16("softbus.msg.code", "Code", base.DEC, CODES))
field("reason_len", ProtoField.uint8("softbus.close.reason_len", "Reason length", base.DEC))
field("reason", ProtoField.string("softbus.close.reason", "Reason"))
field("next_expected", ProtoField.uint32("softbus.ack.next_expected", "Next expected rseq", base.DEC))
field("offending", ProtoField.uint8("softbus.error.offending", "Offending message type", base.HEX, MSG_TYPES))
field("session_id", ProtoField.uint32("softbus.session.id", "Session ID", base.DEC))
field("kind", ProtoField.uint8("softbus.session.kind", "Kind", base.DEC, KINDS))
field("qos", ProtoField.uint8("softbus.session.qos", "QoS", base.DEC, QOS))
field("service_len", ProtoField.uint8("softbus.session.service_len", "Service length", base.DEC))
field("service", ProtoField.string("softbus.session.service", "Service"))
field("max_message", ProtoField.uint32("softbus.session.max_message", "Max message", base.DEC))
field("msg_id", ProtoField.uint32("softbus.data.msg_id", "Message ID", base.DEC))
field("frag_index", ProtoField.uint16("softbus.data.frag_index", "Fragment index", base.DEC))
field("frag_count", ProtoField.uint16("softbus.data.frag_count", "Fragment count", base.DEC))
field("payload", ProtoField.bytes("softbus.data.payload", "Payload"))
field("payload_text", ProtoField.string("softbus.data.text", "Payload (text)"))
field("req_id", ProtoField.uint32("softbus.req_id", "Request ID", base.DEC))
field("cbor", ProtoField.bytes("softbus.cap.cbor", "Capability list (CBOR)"))
field("scope", ProtoField.uint8("softbus.perm.scope", "Scope", base.DEC, SCOPES))
field("duration_s", ProtoField.uint32("softbus.perm.duration_s", "Duration (s)", base.DEC))
field("cap_len", ProtoField.uint8("softbus.cap.name_len", "Capability length", base.DEC))
field("capability", ProtoField.string("softbus.cap.name", "Capability"))
field("perm_result", ProtoField.uint8("softbus.perm.result", "Result", base.DEC, PERM_RESULTS))
field("grant_id", ProtoField.uint32("softbus.perm.grant_id", "Grant ID", base.HEX))
field("expires_in_ms", ProtoField.uint32("softbus.perm.expires_in_ms", "Expires in (ms)", base.DEC))
field("arg_len", ProtoField.uint16("softbus.cap.arg_len", "Arguments length", base.DEC))
field("args", ProtoField.bytes("softbus.cap.args", "Arguments"))
field("cap_status", ProtoField.uint16("softbus.cap.status", "Status", base.DEC, CODES))
field("res_len", ProtoField.uint16("softbus.cap.res_len", "Result length", base.DEC))
field("result", ProtoField.bytes("softbus.cap.result", "Result"))

local fields_list = {}
for _, pf in pairs(F) do
    fields_list[#fields_list + 1] = pf
end
softbus.fields = fields_list

local E = {
    malformed = ProtoExpert.new("softbus.malformed", "Malformed SoftBus frame or message",
        expert.group.MALFORMED, expert.severity.ERROR),
    no_key = ProtoExpert.new("softbus.no_key", "No key for this RECORD's conn_id in the key log",
        expert.group.DECRYPTION, expert.severity.NOTE),
    bad_tag = ProtoExpert.new("softbus.bad_tag", "GCM tag check failed",
        expert.group.DECRYPTION, expert.severity.WARN),
    unverified = ProtoExpert.new("softbus.unverified", "Decrypted without checking the GCM tag",
        expert.group.DECRYPTION, expert.severity.NOTE),
    code = ProtoExpert.new("softbus.error_code", "Non-OK code",
        expert.group.RESPONSE_CODE, expert.severity.NOTE),
}
softbus.experts = { E.malformed, E.no_key, E.bad_tag, E.unverified, E.code }

-----------------------------------------------------------------------------------------------
-- AES-256 (FIPS-197), pure Lua with 32-bit words
-----------------------------------------------------------------------------------------------

local SBOX = {}
local T0, T1, T2, T3 = {}, {}, {}, {}
do
    local function xtime(a)
        a = a * 2
        if a >= 0x100 then
            a = bxor(a, 0x11B)
        end
        return a
    end
    local function rotl8(x, s)
        return band(bor(lshift(x, s), rshift(x, 8 - s)), 0xFF)
    end
    -- Generate the S-box: walk the multiplicative group with generator 3 and its inverse.
    local p, q = 1, 1
    repeat
        p = bxor(p, xtime(p)) -- p * 3
        q = bxor(q, lshift(q, 1))
        q = bxor(q, lshift(q, 2))
        q = bxor(q, lshift(q, 4))
        q = band(q, 0xFF)
        if band(q, 0x80) ~= 0 then
            q = bxor(q, 0x09)
        end -- q = q / 3
        SBOX[p] = bxor(q, rotl8(q, 1), rotl8(q, 2), rotl8(q, 3), rotl8(q, 4), 0x63)
    until p == 1
    SBOX[0] = 0x63
    for x = 0, 255 do
        local s = SBOX[x]
        local s2 = xtime(s)
        local s3 = bxor(s2, s)
        local t = bor(lshift(s2, 24), lshift(s, 16), lshift(s, 8), s3)
        T0[x] = t
        T1[x] = bit.rrotate(t, 8)
        T2[x] = bit.rrotate(t, 16)
        T3[x] = bit.rrotate(t, 24)
    end
end

local function sub_word(w)
    return bor(lshift(SBOX[rshift(w, 24)], 24), lshift(SBOX[band(rshift(w, 16), 0xFF)], 16),
        lshift(SBOX[band(rshift(w, 8), 0xFF)], 8), SBOX[band(w, 0xFF)])
end

-- Key schedule of AES-256: 60 words from a 32-byte Lua string.
local function aes256_expand(key)
    local w = {}
    for i = 0, 7 do
        local a, b, c, d = key:byte(4 * i + 1, 4 * i + 4)
        w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    local rcon = 1
    for i = 8, 59 do
        local t = w[i - 1]
        if i % 8 == 0 then
            t = bxor(sub_word(bit.lrotate(t, 8)), lshift(rcon, 24))
            rcon = band(rcon * 2, 0xFF) -- at most 0x40 for AES-256
        elseif i % 8 == 4 then
            t = sub_word(t)
        end
        w[i] = bxor(w[i - 8], t)
    end
    return w
end

-- Encrypt one block given as four big-endian words; returns four words.
local function aes_encrypt_words(rk, s0, s1, s2, s3)
    s0, s1, s2, s3 = bxor(s0, rk[0]), bxor(s1, rk[1]), bxor(s2, rk[2]), bxor(s3, rk[3])
    local k = 4
    for _ = 1, 13 do
        local t0 = bxor(T0[rshift(s0, 24)], T1[band(rshift(s1, 16), 0xFF)],
            T2[band(rshift(s2, 8), 0xFF)], T3[band(s3, 0xFF)], rk[k])
        local t1 = bxor(T0[rshift(s1, 24)], T1[band(rshift(s2, 16), 0xFF)],
            T2[band(rshift(s3, 8), 0xFF)], T3[band(s0, 0xFF)], rk[k + 1])
        local t2 = bxor(T0[rshift(s2, 24)], T1[band(rshift(s3, 16), 0xFF)],
            T2[band(rshift(s0, 8), 0xFF)], T3[band(s1, 0xFF)], rk[k + 2])
        local t3 = bxor(T0[rshift(s3, 24)], T1[band(rshift(s0, 16), 0xFF)],
            T2[band(rshift(s1, 8), 0xFF)], T3[band(s2, 0xFF)], rk[k + 3])
        s0, s1, s2, s3 = t0, t1, t2, t3
        k = k + 4
    end
    local function last(a, b, c, d, r)
        return bxor(bor(lshift(SBOX[rshift(a, 24)], 24), lshift(SBOX[band(rshift(b, 16), 0xFF)], 16),
            lshift(SBOX[band(rshift(c, 8), 0xFF)], 8), SBOX[band(d, 0xFF)]), r)
    end
    return last(s0, s1, s2, s3, rk[56]), last(s1, s2, s3, s0, rk[57]),
        last(s2, s3, s0, s1, rk[58]), last(s3, s0, s1, s2, rk[59])
end

local function words_of(s, off)
    local a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p = s:byte(off + 1, off + 16)
    return bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d),
        bor(lshift(e, 24), lshift(f, 16), lshift(g, 8), h),
        bor(lshift(i, 24), lshift(j, 16), lshift(k, 8), l),
        bor(lshift(m, 24), lshift(n, 16), lshift(o, 8), p)
end

local function string_of_words(a, b, c, d)
    return string.char(rshift(a, 24), band(rshift(a, 16), 0xFF), band(rshift(a, 8), 0xFF), band(a, 0xFF),
        rshift(b, 24), band(rshift(b, 16), 0xFF), band(rshift(b, 8), 0xFF), band(b, 0xFF),
        rshift(c, 24), band(rshift(c, 16), 0xFF), band(rshift(c, 8), 0xFF), band(c, 0xFF),
        rshift(d, 24), band(rshift(d, 16), 0xFF), band(rshift(d, 8), 0xFF), band(d, 0xFF))
end

-- A block cipher object: enc(s0, s1, s2, s3) -> four words.
local function lua_block_cipher(key)
    local rk = aes256_expand(key)
    return function(a, b, c, d)
        return aes_encrypt_words(rk, a, b, c, d)
    end
end

-- GcryptCipher (Wireshark 4.4+) for the AES blocks, when present; validated by the self-test.
local function gcrypt_block_cipher(key)
    local c = GcryptCipher.open(GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_ECB, 0)
    c:setkey(ByteArray.new(key, true))
    return function(a, b, cc, d)
        local out = c:encrypt(nil, ByteArray.new(string_of_words(a, b, cc, d), true))
        return words_of(out:raw(), 0)
    end
end

local make_block_cipher = lua_block_cipher
local crypto_backend = "pure Lua AES-256 and GHASH"

-----------------------------------------------------------------------------------------------
-- GCM (NIST SP 800-38D): GHASH with Shoup's 8-bit tables, CTR keystream, tag check
-----------------------------------------------------------------------------------------------

-- One step of multiplication by x in GCM's reflected bit order: shift right, reduce by R.
local function times_x(h0, h1, h2, h3)
    local lsb = band(h3, 1)
    h3 = bor(rshift(h3, 1), lshift(band(h2, 1), 31))
    h2 = bor(rshift(h2, 1), lshift(band(h1, 1), 31))
    h1 = bor(rshift(h1, 1), lshift(band(h0, 1), 31))
    h0 = rshift(h0, 1)
    if lsb ~= 0 then
        h0 = bxor(h0, 0xE1000000)
    end
    return h0, h1, h2, h3
end

-- REDUCE8[b]: what the byte b shifted out of Z's low end adds to Z's top word when Z is
-- multiplied by x^8 (only the top word is touched).
local REDUCE8 = {}
for b8 = 0, 255 do
    local z0, z1, z2, z3 = 0, 0, 0, b8
    for _ = 1, 8 do
        z0, z1, z2, z3 = times_x(z0, z1, z2, z3)
    end
    REDUCE8[b8] = z0
end

-- Shoup's 8-bit table: the product of H with every byte value (in GCM's bit order, byte 0x80
-- is 1 and 0x01 is x^7), as four word arrays.
local function ghash_table(h0, h1, h2, h3)
    local A, B, C, D = { [0] = 0 }, { [0] = 0 }, { [0] = 0 }, { [0] = 0 }
    local i = 128
    while i >= 1 do
        A[i], B[i], C[i], D[i] = h0, h1, h2, h3
        h0, h1, h2, h3 = times_x(h0, h1, h2, h3)
        i = i / 2
    end
    i = 2
    while i <= 128 do
        for j = 1, i - 1 do
            A[i + j] = bxor(A[i], A[j])
            B[i + j] = bxor(B[i], B[j])
            C[i + j] = bxor(C[i], C[j])
            D[i + j] = bxor(D[i], D[j])
        end
        i = i * 2
    end
    return { A, B, C, D }
end

-- X * H, X given as four words: Horner's rule over X's bytes, last byte first.
local function ghash_mul(tab, x0, x1, x2, x3)
    local A, B, C, D = tab[1], tab[2], tab[3], tab[4]
    local z0, z1, z2, z3 = 0, 0, 0, 0
    for w = 4, 1, -1 do
        local x = (w == 4 and x3) or (w == 3 and x2) or (w == 2 and x1) or x0
        for sh = 0, 24, 8 do
            local byte = band(rshift(x, sh), 0xFF)
            local rem = band(z3, 0xFF)
            z3 = bxor(bor(rshift(z3, 8), lshift(z2, 24)), D[byte])
            z2 = bxor(bor(rshift(z2, 8), lshift(z1, 24)), C[byte])
            z1 = bxor(bor(rshift(z1, 8), lshift(z0, 24)), B[byte])
            z0 = bxor(rshift(z0, 8), REDUCE8[rem], A[byte])
        end
    end
    return z0, z1, z2, z3
end

local function pad16(s)
    local r = #s % 16
    if r == 0 then
        return s
    end
    return s .. string.rep("\0", 16 - r)
end

-- A GCM context for one key: { enc = block function, tab = GHASH table }.
local function gcm_context(key)
    local enc = make_block_cipher(key)
    local h0, h1, h2, h3 = enc(0, 0, 0, 0)
    return { enc = enc, tab = ghash_table(h0, h1, h2, h3) }
end

local function gcm_ghash(ctx, aad, ct)
    local z0, z1, z2, z3 = 0, 0, 0, 0
    for _, part in ipairs({ pad16(aad), pad16(ct) }) do
        for off = 0, #part - 16, 16 do
            local a, b, c, d = words_of(part, off)
            z0, z1, z2, z3 = ghash_mul(ctx.tab, bxor(z0, a), bxor(z1, b), bxor(z2, c), bxor(z3, d))
        end
    end
    -- Lengths in bits as two u64 (messages here are far below 2^29 bytes).
    local abits, cbits = #aad * 8, #ct * 8
    return ghash_mul(ctx.tab, z0, bxor(z1, abits), z2, bxor(z3, cbits))
end

-- CTR keystream XOR starting at counter `first` under the 96-bit nonce (three words).
local function gcm_ctr(ctx, n0, n1, n2, first, data)
    local out = {}
    local full = math.floor(#data / 16)
    for b = 0, full - 1 do
        local k0, k1, k2, k3 = ctx.enc(n0, n1, n2, first + b)
        local d0, d1, d2, d3 = words_of(data, b * 16)
        out[b + 1] = string_of_words(bxor(d0, k0), bxor(d1, k1), bxor(d2, k2), bxor(d3, k3))
    end
    local tail = #data - full * 16
    if tail > 0 then
        local ks = string_of_words(ctx.enc(n0, n1, n2, first + full))
        local bytes = {}
        for i = 1, tail do
            bytes[i] = bxor(data:byte(full * 16 + i), ks:byte(i))
        end
        out[full + 1] = string.char(table.unpack(bytes))
    end
    return table.concat(out)
end

-- Decrypt: returns plaintext and true/false/nil (tag good / bad / not checked).
local function gcm_open(ctx, nonce, aad, ct, tag, verify)
    local n0, n1, n2 = words_of(nonce .. "\0\0\0\0", 0)
    local pt = gcm_ctr(ctx, n0, n1, n2, 2, ct)
    if not verify then
        return pt, nil
    end
    local s0, s1, s2, s3 = gcm_ghash(ctx, aad, ct)
    local e0, e1, e2, e3 = ctx.enc(n0, n1, n2, 1)
    local want = string_of_words(bxor(s0, e0), bxor(s1, e1), bxor(s2, e2), bxor(s3, e3))
    return pt, want == tag
end

local function gcm_seal(ctx, nonce, aad, pt)
    local n0, n1, n2 = words_of(nonce .. "\0\0\0\0", 0)
    local ct = gcm_ctr(ctx, n0, n1, n2, 2, pt)
    local s0, s1, s2, s3 = gcm_ghash(ctx, aad, ct)
    local e0, e1, e2, e3 = ctx.enc(n0, n1, n2, 1)
    return ct, string_of_words(bxor(s0, e0), bxor(s1, e1), bxor(s2, e2), bxor(s3, e3))
end

local function unhex(h)
    return (h:gsub("%x%x", function(x)
        return string.char(tonumber(x, 16))
    end))
end

local function tohex(s)
    return (s:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end

-- Known-answer tests: FIPS-197 C.3 and the GCM specification's test cases 14 and 16.
local function self_test()
    local enc = make_block_cipher(unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"))
    local out = string_of_words(enc(words_of(unhex("00112233445566778899aabbccddeeff"), 0)))
    if tohex(out) ~= "8ea2b7ca516745bfeafc49904b496089" then
        return false, "AES-256 block"
    end
    local ctx = gcm_context(string.rep("\0", 32))
    local ct, tag = gcm_seal(ctx, string.rep("\0", 12), "", string.rep("\0", 16))
    if tohex(ct) ~= "cea7403d4d606b6e074ec5d3baf39d18" or tohex(tag) ~= "d0d1c8a799996bf0265b98b5d48ab919" then
        return false, "AES-256-GCM test case 14"
    end
    ctx = gcm_context(unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"))
    local pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    local aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    ct, tag = gcm_seal(ctx, unhex("cafebabefacedbaddecaf888"), aad, pt)
    if tohex(ct) ~= "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        or tohex(tag) ~= "76fc6ece0f4e1768cddf8853bb2d551b" then
        return false, "AES-256-GCM test case 16"
    end
    local back, ok = gcm_open(ctx, unhex("cafebabefacedbaddecaf888"), aad, ct, tag, true)
    if back ~= pt or ok ~= true then
        return false, "AES-256-GCM open"
    end
    return true
end

local crypto_ok, crypto_err = self_test()
if crypto_ok and GcryptCipher ~= nil then
    local ok, good = pcall(function()
        make_block_cipher = gcrypt_block_cipher
        return self_test()
    end)
    if ok and good then
        crypto_backend = "libgcrypt AES-256 (GcryptCipher), Lua GHASH"
    else
        make_block_cipher = lua_block_cipher
    end
end
if not crypto_ok then
    report_failure("softbus.lua: AES-GCM self-test failed (" .. tostring(crypto_err) .. "); RECORDs will not be decrypted")
end

-----------------------------------------------------------------------------------------------
-- Key log
-----------------------------------------------------------------------------------------------

-- conn_id (number) -> list of logged keys: { raw = key, epochs = { [n] = key rekeyed n times },
-- ctx = { [n] = GCM context for epochs[n] } }
local keys = {}
-- What was loaded: path, size (to notice a growing file), key count, and why loading failed.
local keylog = { path = nil, size = -1, count = 0 }

local function load_keylog(force)
    local path = softbus.prefs.keylog_file or ""
    if path == "" then
        keys, keylog = {}, { path = nil, size = -1, count = 0 }
        return
    end
    local f, err = io.open(path, "rb")
    if not f then
        keys, keylog = {}, { path = path, size = -1, count = 0, error = err }
        return
    end
    local size = f:seek("end")
    if not force and keylog.path == path and keylog.size == size then
        f:close()
        return
    end
    f:seek("set", 0)
    local new = {}
    local count = 0
    for line in f:lines() do
        local id, key = line:match("^%s*SOFTBUS_KEY%s+(%x%x%x%x%x%x%x%x)%s+(%x+)%s*$")
        if id and #key == 64 then
            local cid = tonumber(id, 16)
            new[cid] = new[cid] or {}
            local list = new[cid]
            local raw = unhex(key)
            local dup = false
            for _, k in ipairs(list) do
                if k.raw == raw then
                    dup = true
                end
            end
            if not dup then
                list[#list + 1] = { raw = raw, epochs = { [0] = raw }, ctx = {} }
                count = count + 1
            end
        end
    end
    f:close()
    keys, keylog = new, { path = path, size = size, count = count }
end

-- Spec 7.4: next_key = first 32 bytes of AES-256-GCM-Encrypt(k, 0^4 || 0xFF^8, "", 0^32),
-- i.e. the keystream blocks with counters 2 and 3.
local function next_key(k)
    local enc = make_block_cipher(k)
    local a = string_of_words(enc(0, 0xFFFFFFFF, 0xFFFFFFFF, 2))
    local b = string_of_words(enc(0, 0xFFFFFFFF, 0xFFFFFFFF, 3))
    return a .. b
end

local function context_for(entry, epoch)
    if entry.ctx[epoch] then
        return entry.ctx[epoch]
    end
    local e = 0
    while not entry.epochs[epoch] do
        if not entry.epochs[e + 1] then
            entry.epochs[e + 1] = next_key(entry.epochs[e])
        end
        e = e + 1
    end
    entry.ctx[epoch] = gcm_context(entry.epochs[epoch])
    return entry.ctx[epoch]
end

-- Per-packet decryption results, so a second pass (and the GUI) need not redo the work.
local decrypted_cache = {}
-- conn_id -> "initiator" / "responder": whose connection ID it is, learnt from HANDSHAKE_1/2.
local conn_roles = {}

function softbus.init()
    decrypted_cache = {}
    conn_roles = {}
    load_keylog(true)
end

-----------------------------------------------------------------------------------------------
-- Inner messages (sections 8 to 13)
-----------------------------------------------------------------------------------------------

local function printable(s)
    if #s == 0 or s:find("[%z\1-\8\11\12\14-\31\127]") then
        return nil
    end
    return s
end

-- Dissect one inner message in `tvb`; returns a short summary for the Info column.
local function dissect_inner(tvb, pinfo, tree)
    local len = tvb:len()
    local st = tree:add(F.msg, tvb())
    if len < 5 then
        st:add_proto_expert_info(E.malformed, "inner message shorter than its 5-byte header")
        return "malformed inner message"
    end
    local ty = tvb(0, 1):uint()
    local name = MSG_TYPES[ty] or string.format("unknown type 0x%02x", ty)
    st:set_text("Inner message: " .. name)
    st:add(F.msg_type, tvb(0, 1))
    local rseq = tvb(1, 4):uint()
    st:add(F.rseq, tvb(1, 4))
    local blen = len - 5
    local b = blen > 0 and tvb(5):tvb() or nil
    local info = name
    if rseq ~= 0 then
        info = info .. string.format(" rseq=%d", rseq)
    end
    local body = blen > 0 and st:add(F.msg_body, tvb(5)) or st

    local pos = 0
    local problem = nil
    local function need(n)
        if pos + n > blen then
            problem = problem or string.format("body ends after %d bytes, %d more needed", blen, pos + n - blen)
            return false
        end
        return true
    end
    local function take(fld, n)
        if n == 0 or not need(n) then
            return nil
        end
        local r = b(pos, n)
        body:add(fld, r)
        pos = pos + n
        return r
    end
    local function take_code(fld)
        local r = take(fld, 2)
        if not r then
            return nil
        end
        local c = r:uint()
        if c ~= 0 then
            body:add_proto_expert_info(E.code, code_name(c))
        end
        return c
    end
    local function take_str(len_fld, str_fld)
        local l = take(len_fld, 1)
        if not l then
            return nil
        end
        local n = l:uint()
        if n == 0 then
            return ""
        end
        if not need(n) then
            return nil
        end
        local r = b(pos, n)
        body:add(str_fld, r)
        pos = pos + n
        return r:string(ENC_UTF_8)
    end
    local function rest()
        local r = pos < blen and b(pos) or nil
        pos = blen
        return r
    end

    if ty == 0x01 then -- HEARTBEAT
    elseif ty == 0x02 then -- CLOSE
        local c = take_code(F.code)
        local reason = take_str(F.reason_len, F.reason)
        if c then
            info = info .. " " .. code_name(c)
        end
        if reason and reason ~= "" then
            info = info .. string.format(" %q", reason)
        end
    elseif ty == 0x03 then -- ACK
        local r = take(F.next_expected, 4)
        if r then
            info = info .. " next=" .. r:uint()
        end
    elseif ty == 0x04 then -- ERROR
        local c = take_code(F.code)
        local o = take(F.offending, 1)
        if c and o then
            info = info .. string.format(" %s (type 0x%02x)", code_name(c), o:uint())
        end
    elseif ty == 0x10 then -- SESSION_OPEN
        local sid = take(F.session_id, 4)
        local kind = take(F.kind, 1)
        local qos = take(F.qos, 1)
        local svc = take_str(F.service_len, F.service)
        if sid and kind and qos and svc then
            info = info .. string.format(" sid=%d %s %s %q", sid:uint(), KINDS[kind:uint()] or ("kind " .. kind:uint()),
                QOS[qos:uint()] or ("qos " .. qos:uint()), svc)
        end
    elseif ty == 0x11 then -- SESSION_ACCEPT
        local sid = take(F.session_id, 4)
        local mm = take(F.max_message, 4)
        if sid and mm then
            info = info .. string.format(" sid=%d max=%d", sid:uint(), mm:uint())
        end
    elseif ty == 0x12 or ty == 0x13 then -- SESSION_REJECT, SESSION_CLOSE
        local sid = take(F.session_id, 4)
        local c = take_code(F.code)
        if sid and c then
            info = info .. string.format(" sid=%d %s", sid:uint(), code_name(c))
        end
    elseif ty == 0x14 then -- DATA
        local sid = take(F.session_id, 4)
        local mid = take(F.msg_id, 4)
        local fi = take(F.frag_index, 2)
        local fc = take(F.frag_count, 2)
        local payload = rest()
        if sid and mid and fi and fc then
            info = info .. string.format(" sid=%d msg=%d frag=%d/%d", sid:uint(), mid:uint(), fi:uint() + 1, fc:uint())
            if fc:uint() == 0 or fi:uint() >= fc:uint() then
                body:add_proto_expert_info(E.malformed, "frag_index not below frag_count")
            end
            if payload then
                body:add(F.payload, payload)
                local text = printable(payload:raw())
                if text then
                    body:add(F.payload_text, payload, text)
                    local shown = #text > 40 and (text:sub(1, 40) .. "...") or text
                    info = info .. string.format(" %q", shown)
                else
                    info = info .. string.format(" %d bytes", payload:len())
                end
            else
                info = info .. " (empty)"
            end
        end
    elseif ty == 0x20 then -- CAP_QUERY
        local r = take(F.req_id, 4)
        if r then
            info = info .. " req=" .. r:uint()
        end
    elseif ty == 0x21 then -- CAP_LIST
        local r = take(F.req_id, 4)
        local cbor = rest()
        if r then
            info = info .. " req=" .. r:uint()
        end
        if cbor then
            local ct = body:add(F.cbor, cbor)
            local ok, cbor_dissector = pcall(Dissector.get, "cbor")
            if ok and cbor_dissector then
                pcall(function()
                    cbor_dissector:call(cbor:tvb(), pinfo, ct)
                end)
            end
        end
    elseif ty == 0x30 then -- PERM_REQUEST
        local r = take(F.req_id, 4)
        local sc = take(F.scope, 1)
        local d = take(F.duration_s, 4)
        local cap = take_str(F.cap_len, F.capability)
        if r and sc and d and cap then
            info = info .. string.format(" req=%d %q %s", r:uint(), cap, SCOPES[sc:uint()] or ("scope " .. sc:uint()))
            if d:uint() ~= 0 then
                info = info .. string.format(" %ds", d:uint())
            end
        end
    elseif ty == 0x31 then -- PERM_RESPONSE
        local r = take(F.req_id, 4)
        local res = take(F.perm_result, 1)
        local g = take(F.grant_id, 4)
        take(F.expires_in_ms, 4)
        if r and res and g then
            info = info .. string.format(" req=%d %s", r:uint(), PERM_RESULTS[res:uint()] or ("result " .. res:uint()))
            if g:uint() ~= 0 then
                info = info .. string.format(" grant=0x%08x", g:uint())
            end
        end
    elseif ty == 0x32 then -- PERM_REVOKE
        local g = take(F.grant_id, 4)
        if g then
            info = info .. string.format(" grant=0x%08x", g:uint())
        end
    elseif ty == 0x33 then -- CAP_INVOKE
        local r = take(F.req_id, 4)
        local g = take(F.grant_id, 4)
        local cap = take_str(F.cap_len, F.capability)
        local al = take(F.arg_len, 2)
        if al then
            take(F.args, al:uint())
        end
        if r and g and cap then
            info = info .. string.format(" req=%d %q grant=0x%08x", r:uint(), cap, g:uint())
        end
    elseif ty == 0x34 then -- CAP_RESULT
        local r = take(F.req_id, 4)
        local c = take_code(F.cap_status)
        local rl = take(F.res_len, 2)
        if rl then
            take(F.result, rl:uint())
        end
        if r and c then
            info = info .. string.format(" req=%d %s", r:uint(), code_name(c))
        end
    else
        st:add_proto_expert_info(E.malformed, "unknown inner message type")
        return info
    end
    if problem then
        st:add_proto_expert_info(E.malformed, problem)
    elseif pos < blen and ty ~= 0x14 and ty ~= 0x21 then
        st:add_proto_expert_info(E.malformed, string.format("%d trailing bytes after the body", blen - pos))
    end
    return info
end

-----------------------------------------------------------------------------------------------
-- Frames (section 2)
-----------------------------------------------------------------------------------------------

local function decrypt_record(tvb, pinfo, conn_id, epoch, seq_hi, seq_lo, ct, tag)
    local cache_key = string.format("%d:%08x:%d:%08x%08x", pinfo.number, conn_id, epoch, seq_hi, seq_lo)
    local cached = decrypted_cache[cache_key]
    if cached then
        return cached
    end
    local result = { status = 0 }
    if not crypto_ok then
        return result
    end
    local list = keys[conn_id]
    if not list then
        load_keylog(false) -- the key log may have grown (live capture)
        list = keys[conn_id]
    end
    if not list then
        decrypted_cache[cache_key] = result
        return result
    end
    local verify = softbus.prefs.verify_tag
    local aad = tvb(0, 15):raw()
    local nonce = "\0\0\0\0" .. string_of_words(seq_hi, seq_lo, 0, 0):sub(1, 8)
    -- A logged key is normally the epoch-0 key of its direction, so a record of epoch E uses it
    -- derived E times. A key logged after a rekey is the key of a later epoch: with tag checks
    -- on, fewer derivations are tried too, and the one whose tag verifies wins.
    local depths = { epoch }
    if verify then
        for d = 0, epoch - 1 do
            depths[#depths + 1] = d
        end
    end
    for _, entry in ipairs(list) do
        for _, d in ipairs(depths) do
            local ctx = context_for(entry, d)
            local pt, ok = gcm_open(ctx, nonce, aad, ct, tag, verify)
            if ok == nil then
                result = { status = 3, plaintext = pt, depth = d }
                break
            elseif ok then
                result = { status = 1, plaintext = pt, depth = d }
                break
            else
                result = { status = 2 }
            end
        end
        if result.plaintext then
            break
        end
    end
    decrypted_cache[cache_key] = result
    return result
end

-- Dissect one SoftBus frame occupying all of `tvb`; returns its summary.
local function dissect_frame(tvb, pinfo, root, prefix_len)
    local len = tvb:len()
    local tree = root:add(softbus, tvb())
    if prefix_len then
        tree:add(F.length, tvb(0, 2))
        len = len - 2
        if len < 6 then
            tree:add_proto_expert_info(E.malformed, "length prefix below the 6-byte header")
            return "malformed (short frame)"
        end
        tvb = tvb(2):tvb()
    end
    if len < 6 then
        tree:add_proto_expert_info(E.malformed, "shorter than the 6-byte header")
        return "malformed (short frame)"
    end
    local version = tvb(0, 1):uint()
    local ty = tvb(1, 1):uint()
    local conn_id = tvb(2, 4):uint()
    local name = FRAME_TYPES[ty] or string.format("unknown type 0x%02x", ty)
    tree:add(F.version, tvb(0, 1))
    tree:add(F.frame_type, tvb(1, 1))
    tree:add(F.conn_id, tvb(2, 4))
    tree:append_text(", " .. name)
    if version ~= 0x01 then
        tree:add_proto_expert_info(E.malformed, string.format("version 0x%02x is not SoftBus v1", version))
        return string.format("version 0x%02x %s", version, name)
    end
    local blen = len - 6
    local lim = BODY_LEN[ty]
    if not lim then
        tree:add_proto_expert_info(E.malformed, "unknown frame type")
        return name
    end
    if blen < lim[1] or blen > lim[2] then
        tree:add_proto_expert_info(E.malformed,
            string.format("body of %d bytes; %s allows %d..%d", blen, name, lim[1], lim[2]))
        return name .. " (bad length)"
    end
    local b = tvb(6):tvb()
    local info = name
    local function spake(off)
        local st = tree:add(F.spake_msg, b(off, 33))
        st:add(F.spake_side, b(off, 1))
        st:add(F.spake_point, b(off + 1, 32))
    end

    if ty == 0x01 then
        tree:add(F.pairing_id, b(0, 4))
        tree:add(F.static_key, b(4, 32))
        spake(36)
        info = info .. string.format(" pairing_id=0x%08x", b(0, 4):uint())
    elseif ty == 0x02 then
        tree:add(F.pairing_id, b(0, 4))
        tree:add(F.static_key, b(4, 32))
        spake(36)
        tree:add(F.confirm, b(69, 32))
        info = info .. string.format(" pairing_id=0x%08x", b(0, 4):uint())
    elseif ty == 0x03 then
        tree:add(F.pairing_id, b(0, 4))
        tree:add(F.confirm, b(4, 32))
        info = info .. string.format(" pairing_id=0x%08x", b(0, 4):uint())
    elseif ty == 0x04 then
        tree:add(F.pairing_id, b(0, 4))
        local st = b(4, 2):uint()
        local item = tree:add(F.status, b(4, 2))
        if st ~= 0 then
            item:add_proto_expert_info(E.code, code_name(st))
        end
        tree:add(F.mac, b(6, 32))
        info = info .. string.format(" pairing_id=0x%08x %s", b(0, 4):uint(), code_name(st))
    elseif ty == 0x10 or ty == 0x11 or ty == 0x12 then
        local noise_off = 0
        if ty ~= 0x12 then
            local sender = b(0, 4):uint()
            tree:add(F.sender_conn_id, b(0, 4))
            noise_off = 4
            if ty == 0x10 then
                conn_roles[sender] = "initiator"
                info = info .. string.format(" init_conn_id=0x%08x", sender)
            else
                conn_roles[sender] = "responder"
                conn_roles[conn_id] = conn_roles[conn_id] or "initiator"
                info = info .. string.format(" resp_conn_id=0x%08x", sender)
            end
        end
        local nlen = blen - noise_off
        local nt = tree:add(F.noise, b(noise_off, nlen))
        if ty == 0x10 then
            nt:set_text(string.format("Noise message 1 (-> e), %d bytes", nlen))
            nt:add(F.noise_e, b(noise_off, 32))
            if nlen > 32 then
                nt:add(F.noise_payload, b(noise_off + 32, nlen - 32))
            end
        elseif ty == 0x11 then
            nt:set_text(string.format("Noise message 2 (<- e, ee, s, es + HELLO), %d bytes", nlen))
            nt:add(F.noise_e, b(noise_off, 32))
            if nlen >= 32 + 48 then
                nt:add(F.noise_s, b(noise_off + 32, 48))
                if nlen > 80 then
                    nt:add(F.noise_payload_enc, b(noise_off + 80, nlen - 80))
                end
            end
        else
            nt:set_text(string.format("Noise message 3 (-> s, se + HELLO), %d bytes", nlen))
            if nlen >= 48 then
                nt:add(F.noise_s, b(0, 48))
                if nlen > 48 then
                    nt:add(F.noise_payload_enc, b(48, nlen - 48))
                end
            end
        end
    elseif ty == 0x1F then
        local c = b(0, 2):uint()
        local item = tree:add(F.reject_code, b(0, 2))
        item:add_proto_expert_info(E.code, code_name(c))
        info = info .. " " .. code_name(c)
    elseif ty == 0x20 then
        local epoch = b(0, 1):uint()
        tree:add(F.epoch, b(0, 1))
        tree:add(F.seq, b(1, 8))
        local seq_hi, seq_lo = b(1, 4):uint(), b(5, 4):uint()
        local ctlen = blen - 9 - 16
        if ctlen > 0 then
            tree:add(F.ciphertext, b(9, ctlen))
        end
        tree:add(F.tag, b(9 + ctlen, 16))
        local role = conn_roles[conn_id]
        if role == "initiator" then
            tree:add(F.role, "responder -> initiator"):set_generated()
        elseif role == "responder" then
            tree:add(F.role, "initiator -> responder"):set_generated()
        end
        info = info .. string.format(" conn=0x%08x epoch=%d seq=%s", conn_id, epoch, tostring(b(1, 8):uint64()))
        local ct = ctlen > 0 and b(9, ctlen):raw() or ""
        local tag = b(9 + ctlen, 16):raw()
        local r = decrypt_record(tvb, pinfo, conn_id, epoch, seq_hi, seq_lo, ct, tag)
        local ts = tree:add(F.tag_status, r.status)
        ts:set_generated()
        if r.status == 0 then
            if keylog.error then
                ts:add_proto_expert_info(E.no_key, "key log file unreadable: " .. keylog.error)
            elseif not keylog.path then
                ts:add_proto_expert_info(E.no_key, "no key log file set (preference softbus.keylog_file)")
            else
                ts:add_proto_expert_info(E.no_key)
            end
        elseif r.status == 2 then
            ts:add_proto_expert_info(E.bad_tag)
            info = info .. " [tag check FAILED]"
        elseif r.status == 3 then
            ts:add_proto_expert_info(E.unverified)
        end
        tree:add(F.decrypted, r.plaintext ~= nil):set_generated()
        if r.depth and r.depth ~= 0 then
            tree:add(F.key_rekeys, r.depth):set_generated()
        end
        if r.plaintext then
            local ptvb = ByteArray.new(r.plaintext, true):tvb("Decrypted SoftBus record")
            info = info .. ": " .. dissect_inner(ptvb, pinfo, tree)
        end
    end
    return info
end

local function set_columns(pinfo, info)
    pinfo.cols.protocol = "SoftBus"
    pinfo.cols.info = info
end

function softbus.dissector(tvb, pinfo, tree)
    if tvb:len() == 0 then
        return 0
    end
    set_columns(pinfo, dissect_frame(tvb, pinfo, tree, false))
    return tvb:len()
end

-- TCP: u16 length prefix per frame (section 2.1).
local function tcp_pdu_len(tvb, _pinfo, offset)
    return 2 + tvb(offset, 2):uint()
end

local tcp_infos = {}
local function tcp_pdu(tvb, pinfo, tree)
    local info = dissect_frame(tvb, pinfo, tree, true)
    tcp_infos[#tcp_infos + 1] = info
    pinfo.cols.protocol = "SoftBus"
    pinfo.cols.info = table.concat(tcp_infos, "; ")
    return tvb:len()
end

function softbus_tcp.dissector(tvb, pinfo, tree)
    tcp_infos = {}
    dissect_tcp_pdus(tvb, tree, 2, tcp_pdu_len, tcp_pdu, true)
    return tvb:len()
end

function softbus_link.dissector(tvb, pinfo, tree)
    if tvb:len() < 1 then
        return 0
    end
    local dir = tvb(0, 1):uint()
    local t = tree:add(softbus_link, tvb(0, 1))
    t:add(f_link_dir, tvb(0, 1))
    pinfo.cols.src = (dir == 0) and "tester" or "DUT"
    pinfo.cols.dst = (dir == 0) and "DUT" or "tester"
    if tvb:len() == 1 then
        return 1
    end
    return 1 + softbus.dissector(tvb(1):tvb(), pinfo, tree)
end

-- Heuristic: version 0x01, a known frame type and a body length 2.4 allows for it.
local function looks_like_softbus(tvb)
    local len = tvb:len()
    if len < 6 or tvb(0, 1):uint() ~= 0x01 then
        return false
    end
    local lim = BODY_LEN[tvb(1, 1):uint()]
    if not lim then
        return false
    end
    local blen = len - 6
    return blen >= lim[1] and blen <= lim[2]
end

local function heuristic(tvb, pinfo, tree)
    if not softbus.prefs.heuristic or not looks_like_softbus(tvb) then
        return false
    end
    softbus.dissector(tvb, pinfo, tree)
    pinfo.conversation = softbus
    return true
end

-- TCP heuristic: a segment that starts with a length prefix followed by a frame that passes
-- the UDP test for that length. Once matched, the whole conversation is SoftBus over TCP.
local function tcp_heuristic(tvb, pinfo, tree)
    if not softbus.prefs.heuristic or tvb:len() < 8 then
        return false
    end
    local flen = tvb(0, 2):uint()
    if flen < 6 or tvb(2, 1):uint() ~= 0x01 then
        return false
    end
    local lim = BODY_LEN[tvb(3, 1):uint()]
    if not lim or flen - 6 < lim[1] or flen - 6 > lim[2] then
        return false
    end
    softbus_tcp.dissector(tvb, pinfo, tree)
    pinfo.conversation = softbus_tcp
    return true
end

-----------------------------------------------------------------------------------------------
-- Registration
-----------------------------------------------------------------------------------------------

local udp_table = DissectorTable.get("udp.port")
local tcp_table = DissectorTable.get("tcp.port")
local registered_ports = nil

local function register_ports()
    if registered_ports then
        udp_table:remove(registered_ports, softbus)
        tcp_table:remove(registered_ports, softbus_tcp)
    end
    registered_ports = softbus.prefs.ports
    if registered_ports and tostring(registered_ports) ~= "" then
        udp_table:add(registered_ports, softbus)
        tcp_table:add(registered_ports, softbus_tcp)
    end
end

function softbus.prefs_changed()
    register_ports()
    load_keylog(true)
end

register_ports()
pcall(function()
    udp_table:add_for_decode_as(softbus)
    tcp_table:add_for_decode_as(softbus_tcp)
end)
softbus:register_heuristic("udp", heuristic)
pcall(function()
    DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, softbus_link)
end)
softbus_tcp:register_heuristic("tcp", tcp_heuristic)

softbus.prefs.about = Pref.statictext("SoftBus dissector " .. PLUGIN_VERSION .. "; decryption: "
    .. (crypto_ok and crypto_backend or "unavailable (self-test failed)"), "")

-- For scripts and tests: the version and the crypto backend in use.
softbus_dissector_info = {
    version = PLUGIN_VERSION,
    crypto_backend = crypto_backend,
    crypto_ok = crypto_ok,
}
