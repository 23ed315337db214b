"""Interop check: zigpy-znp (a third-party Zigbee host stack) against the kit's virtual ZNP
coordinator (`znp-emulator`), over a real PTY.

Run by `tests/tests/zigpy_interop.rs` inside a venv that has zigpy-znp from PyPI:

    python zigpy_startup.py /dev/pts/N --baud 115200 --light 0x4f21 --sensor 0x7a3c

It uses zigpy-znp's `ZNP` API class as Home Assistant's ZHA does at startup: connect (ping with
the bootloader-skip dance, struct alignment probe, Z-Stack version detection), SYS_VERSION,
UTIL_GET_DEVICE_INFO, reading the network parameters from NV, starting the network through
BDB commissioning, then registers an endpoint and talks ZCL (built and parsed with zigpy's own
ZCL code) to the two simulated devices. It prints one JSON object on stdout; diagnostics go to
stderr. Exit status 0 only if every step succeeded.
"""

import argparse
import asyncio
import importlib.metadata
import json
import logging
import sys
import time

import zigpy.zcl.foundation as foundation
from zigpy_znp.api import ZNP
import zigpy_znp.commands as c
import zigpy_znp.config as conf
import zigpy_znp.types as t

STEP_TIMEOUT = 10
HA_PROFILE = 0x0104
ON_OFF = 0x0006
TEMPERATURE = 0x0402


async def zcl_request(znp, nwk, cluster, header, payload, trans_id):
    """Sends one ZCL frame with AF_DATA_REQUEST, waits for AF_DATA_CONFIRM and the device's
    answer (AF_INCOMING_MSG), and returns the answer's ZCL header and payload."""
    data = header.serialize() + payload
    answer = znp.wait_for_response(
        c.AF.IncomingMsg.Callback(partial=True, SrcAddr=nwk, ClusterId=cluster)
    )
    confirm = await znp.request_callback_rsp(
        request=c.AF.DataRequest.Req(
            DstAddr=nwk,
            DstEndpoint=1,
            SrcEndpoint=1,
            ClusterId=cluster,
            TSN=trans_id,
            Options=c.af.TransmitOptions.ACK_REQUEST,
            Radius=30,
            Data=t.ShortBytes(data),
        ),
        RspStatus=t.Status.SUCCESS,
        callback=c.AF.DataConfirm.Callback(partial=True, TSN=trans_id),
        timeout=STEP_TIMEOUT,
    )
    if confirm.Status != t.Status.SUCCESS:
        raise RuntimeError(f"AF_DATA_CONFIRM status {confirm.Status!r}")
    msg = await asyncio.wait_for(answer, STEP_TIMEOUT)
    answer_header, rest = foundation.ZCLHeader.deserialize(msg.Data)
    if answer_header.tsn != header.tsn:
        raise RuntimeError(f"ZCL answer has TSN {answer_header.tsn}, request had {header.tsn}")
    return answer_header, rest


async def read_attribute(znp, nwk, cluster, attribute, tsn):
    header = foundation.ZCLHeader.general(tsn, foundation.GeneralCommand.Read_Attributes)
    payload = t.uint16_t(attribute).serialize()
    rsp_header, rest = await zcl_request(znp, nwk, cluster, header, payload, tsn)
    if rsp_header.command_id != foundation.GeneralCommand.Read_Attributes_rsp:
        raise RuntimeError(f"expected Read Attributes Response, got {rsp_header!r}")
    schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Read_Attributes_rsp].schema
    records, _ = schema.deserialize(rest)
    record = records.status_records[0]
    if record.status != foundation.Status.SUCCESS:
        raise RuntimeError(f"attribute {attribute:#06x} read failed: {record.status!r}")
    return record.value.value


async def main(args):
    config = conf.CONFIG_SCHEMA(
        {conf.CONF_DEVICE: {conf.CONF_DEVICE_PATH: args.port, "baudrate": args.baud}}
    )
    znp = ZNP(config)
    result = {"zigpy_znp": importlib.metadata.version("zigpy-znp")}
    started = time.monotonic()
    await znp.connect()
    try:
        result["connect_s"] = round(time.monotonic() - started, 3)
        result["capabilities"] = int(znp.capabilities)
        result["align_structs"] = znp.nvram.align_structs
        result["zstack"] = float(znp.version)

        ping = await znp.request(c.SYS.Ping.Req())
        result["ping_capabilities"] = int(ping.Capabilities)
        version = await znp.request(c.SYS.Version.Req())
        result["version"] = {
            "transport_rev": int(version.TransportRev),
            "product_id": int(version.ProductId),
            "major": int(version.MajorRel),
            "minor": int(version.MinorRel),
            "maint": int(version.MaintRel),
            "code_revision": int(version.CodeRevision),
        }
        info = await znp.request(c.UTIL.GetDeviceInfo.Req())
        result["device_info"] = {
            "status": int(info.Status),
            "ieee": str(info.IEEE),
            "nwk": int(info.NWK),
            "device_type": int(info.DeviceType),
            "state": int(info.DeviceState),
        }

        await znp.load_network_info()
        result["network"] = {
            "channel": int(znp.network_info.channel),
            "pan_id": int(znp.network_info.pan_id),
            "extended_pan_id": str(znp.network_info.extended_pan_id),
            "nwk_frame_counter": int(znp.network_info.network_key.tx_counter),
            "coordinator_ieee": str(znp.node_info.ieee),
            "model": znp.node_info.model,
        }

        await znp.start_network()
        info = await znp.request(c.UTIL.GetDeviceInfo.Req())
        result["started"] = {"state": int(info.DeviceState), "nwk": int(info.NWK)}

        await znp.request(
            c.AF.Register.Req(
                Endpoint=1,
                ProfileId=HA_PROFILE,
                DeviceId=0x0005,
                DeviceVersion=0,
                LatencyReq=c.af.LatencyReq.NoLatencyReqs,
                InputClusters=[],
                OutputClusters=[ON_OFF, TEMPERATURE],
            ),
            RspStatus=t.Status.SUCCESS,
        )

        light = int(args.light, 0)
        sensor = int(args.sensor, 0)
        before = await read_attribute(znp, light, ON_OFF, 0x0000, tsn=1)
        toggle = foundation.ZCLHeader.cluster(2, 0x02)  # On/Off: Toggle
        rsp_header, rest = await zcl_request(znp, light, ON_OFF, toggle, b"", trans_id=2)
        default_rsp, _ = foundation.GENERAL_COMMANDS[
            foundation.GeneralCommand.Default_Response
        ].schema.deserialize(rest)
        after = await read_attribute(znp, light, ON_OFF, 0x0000, tsn=3)
        temperature = await read_attribute(znp, sensor, TEMPERATURE, 0x0000, tsn=4)
        result["zcl"] = {
            "light_on_before": bool(before),
            "toggle_default_response_status": int(default_rsp.status),
            "light_on_after": bool(after),
            "temperature_centi_c": int(temperature),
        }
    finally:
        await znp.disconnect()
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--light", default="0x4f21")
    parser.add_argument("--sensor", default="0x7a3c")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr
    )
    asyncio.run(asyncio.wait_for(main(args), timeout=120))
