"""The host itself, on the no-op baseline filter: lifecycle, passthrough of
headers and bodies, chunking, workers. If these fail, the host is wrong,
not aispend."""

from wasm_host import Host, Reply


def test_noop_filter_passes_requests_and_responses_through(profile, noop_wasm):
    vm = Host(profile, noop_wasm, "", workers=2)
    seen = []

    def upstream(req):
        seen.append(req)
        return Reply(201, [("content-type", "text/plain"), ("x-up", "1")], b"created")

    ex = vm.http_request(method="PUT", path="/a?b=c", headers=[("X-Client", "v")],
                         body=b"payload", upstream=upstream)
    assert seen and ex.upstream is seen[0]
    assert ex.upstream.header(":path") == "/a?b=c"
    assert ex.upstream.header(":method") == "PUT"
    assert ex.upstream.header("x-client") == "v", "header names are lower-cased, values kept"
    assert ex.upstream.body == b"payload"
    assert (ex.client.status, ex.client.body, ex.client.header("x-up")) == (201, b"created", "1")
    assert not ex.client.local


def test_chunked_bodies_arrive_whole_on_both_sides(profile, noop_wasm):
    vm = Host(profile, noop_wasm, "")
    ex = vm.http_request(chunks=[b"ab", b"cd", b"ef"],
                         upstream=lambda req: Reply(200, [], [b"1", b"22", b"333"]))
    assert ex.upstream.body == b"abcdef"
    assert ex.client.body == b"122333"


def test_each_worker_is_its_own_vm_instance(profile, noop_wasm):
    vm = Host(profile, noop_wasm, "", workers=3)
    assert len({id(w.instance) for w in vm.workers}) == 3
    for i in range(3):
        assert vm.http_request(worker=i).worker == i
    # Streams are gone after on_delete.
    assert all(not w.streams for w in vm.workers)


def test_noop_filter_sets_no_tick_and_dispatches_nothing(profile, noop_wasm):
    vm = Host(profile, noop_wasm, "")
    start = vm.clock.now_ms()
    vm.tick()
    assert vm.clock.now_ms() == start, "no tick period set, so no time passes"
    assert vm.calls == [] and vm.violations == []
    assert all(w.unknown_imports == [] for w in vm.workers)
