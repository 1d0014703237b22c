"""An outside system talks to a Liên Thông node with nothing but proto/.

Generates Python stubs from proto/ with grpcio-tools, connects over mTLS
with a client certificate issued by `lienthong client add`, submits an
alert, reads it back by reference and finds it by text without diacritics.
Exits non-zero on any failure. Run by the e2e test `python::…`.
"""

import argparse
import pathlib
import sys
import tempfile
import time

from grpc_tools import protoc
import grpc


def generate(proto_root: pathlib.Path, out: pathlib.Path) -> None:
    files = [str(p.relative_to(proto_root)) for p in sorted(proto_root.rglob("*.proto"))]
    args = ["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--proto", required=True)
    a = ap.parse_args()

    out = pathlib.Path(tempfile.mkdtemp())
    generate(pathlib.Path(a.proto), out)
    sys.path.insert(0, str(out))
    from lienthong.v1 import alerts_pb2, alerts_pb2_grpc, cases_pb2, cases_pb2_grpc, entry_pb2  # noqa: E402

    creds = grpc.ssl_channel_credentials(
        root_certificates=pathlib.Path(a.ca).read_bytes(),
        private_key=pathlib.Path(a.key).read_bytes(),
        certificate_chain=pathlib.Path(a.cert).read_bytes(),
    )
    options = (("grpc.ssl_target_name_override", "localhost"),)
    with grpc.secure_channel(a.addr, creds, options=options) as ch:
        stub = alerts_pb2_grpc.AlertsStub(ch)
        alert = entry_pb2.Alert(
            reference="python-client-0001",
            category=entry_pb2.CATEGORY_TRADE_FRAUD,
            severity=entry_pb2.SEVERITY_MEDIUM,
            title="Hóa đơn khống xuất khẩu nông sản",
            description="Doanh nghiệp kê khai xuất xứ không đúng cho lô hàng hạt điều.",
            location=entry_pb2.Location(province="75", commune="Phường Tam Hiệp"),
            observed_unix_ms=int(time.time() * 1000) - 60_000,
            subjects=[entry_pb2.Subject(business=entry_pb2.Business(tax_code="3600123456-002", name="Công ty CP Nông sản Đông Nam"))],
        )
        r = stub.Submit(alerts_pb2.SubmitAlertRequest(alert=alert), timeout=10)
        assert len(r.entry_id) == 32 and not r.duplicate, r
        again = stub.Submit(alerts_pb2.SubmitAlertRequest(alert=alert), timeout=10)
        assert again.duplicate and again.entry_id == r.entry_id, again

        got = stub.Get(alerts_pb2.GetEntryRequest(reference="python-client-0001"), timeout=10)
        assert got.entry_id == r.entry_id
        assert got.body.alert.title == "Hóa đơn khống xuất khẩu nông sản", got.body.alert.title
        assert got.body.alert.subjects[0].business.tax_code == "3600123456-002"

        found = stub.Query(alerts_pb2.QueryRequest(text="hoa don khong"), timeout=10)
        assert [e.entry_id for e in found.entries] == [r.entry_id], found

        try:
            stub.Submit(alerts_pb2.SubmitAlertRequest(alert=entry_pb2.Alert(reference="x")), timeout=10)
            raise AssertionError("invalid alert accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
            assert "alert.category" in e.details(), e.details()
        # Cases: open one from the alert, record a step, read the folded
        # state, find it without diacritics, retract the step.
        cases = cases_pb2_grpc.CasesStub(ch)
        opened = cases.RecordCaseEvent(entry_pb2.CaseEvent(
            reference="python-case-1",
            opened=entry_pb2.CaseOpened(title="Gian lận xuất xứ hạt điều", category=entry_pb2.CATEGORY_TRADE_FRAUD,
                                        alert_ids=[r.entry_id]),
        ), timeout=10)
        case_id = opened.written.entry_id
        assert opened.state.lead == opened.written.author and opened.state.status == cases_pb2.CASE_STATUS_OPEN
        step = cases.RecordCaseEvent(entry_pb2.CaseEvent(
            case_id=case_id, reference="python-case-1-kt",
            inspection_result=entry_pb2.InspectionResult(
                inspected_unix_ms=int(time.time() * 1000) - 1000,
                location=entry_pb2.Location(province="75"),
                findings="Kho không có hàng như kê khai", violation_found=True),
        ), timeout=10)
        assert step.state.inspections == 1, step.state
        listed = cases.ListCases(cases_pb2.ListCasesRequest(text="gian lan xuat xu"), timeout=10)
        assert [c.case_id for c in listed.cases] == [case_id], listed
        stub.Retract(alerts_pb2.RetractRequest(entry_id=step.written.entry_id, reason="Nhập nhầm"), timeout=10)
        state = cases.GetCase(cases_pb2.GetCaseRequest(case_id=case_id), timeout=10)
        assert state.inspections == 0 and state.steps[1].retracted, state
        try:
            stub.Retract(alerts_pb2.RetractRequest(entry_id=case_id, reason="x"), timeout=10)
            raise AssertionError("retracting a case's opening was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.code()
    print("python client: submit, duplicate, get, query, validation, cases and retraction OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
