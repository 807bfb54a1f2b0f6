// The runtime: error translation and rendering, node configuration, and
// node start-up and clean shutdown.

#define BOOST_TEST_MODULE mnemo_runtime
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/runtime/variant_inspect.hpp"
#include "mnemo/runtime/wire.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;

namespace stall {
// An application's error enum, one line per code.
MNEMO_ERROR_ENUM(stall_errc, "stall",
                 none,
                 /// Comments between the codes are fine.
                 closed,
                 sold_out)
}  // namespace stall

namespace shelf {
// Messages declared once each (MNEMO_MESSAGE).
struct stock {
  std::string sku;
  int64_t units = 0;
  std::vector<std::string> tags;
  MNEMO_MESSAGE(stock, sku, units, tags)
};
struct clear {
  MNEMO_EMPTY_MESSAGE(clear)
};
using command = std::variant<stock, clear>;
// A later version of `stock`, with one field more.
struct stock_v2 {
  std::string sku;
  int64_t units = 0;
  std::vector<std::string> tags;
  std::string origin = "unknown";
  MNEMO_MESSAGE(stock_v2, sku, units, tags, origin)
};
}  // namespace shelf

BOOST_AUTO_TEST_SUITE(messages)

// MNEMO_MESSAGE: == field by field; one msgpack encoding for the journal
// and, through CAF's inspect, for CAF messages and the cluster wire
// (variants of declared types included); a malformed payload is a clear
// error; a field added later is read by the older type and defaulted by
// the newer one, as msgpack maps are.
BOOST_AUTO_TEST_CASE(a_message_is_declared_once_for_disk_wire_and_equality) {
  using namespace shelf;
  stock a{"sku-1", 5, {"red", "large"}};
  BOOST_CHECK(a == (stock{"sku-1", 5, {"red", "large"}}));
  BOOST_CHECK(a != (stock{"sku-1", 6, {"red", "large"}}));
  BOOST_CHECK(clear{} == clear{});
  BOOST_CHECK_EQUAL(std::string{stock::mnemo_type_name}, "stock");
  // The wire: through CAF's binary format, as the cluster sends commands.
  for (command c : {command{a}, command{clear{}}}) {
    auto buf = runtime::wire::pack(7, c);
    BOOST_REQUIRE(!buf.empty());
    command back = stock{"other", 1, {}};
    auto err = runtime::wire::unpack(buf, back);
    BOOST_REQUIRE_MESSAGE(!err, runtime::describe(err));
    BOOST_CHECK(back == c);
  }
  // The same bytes as the journal's msgpack.
  msgpack::sbuffer disk;
  msgpack::pack(disk, a);
  auto handle = msgpack::unpack(disk.data(), disk.size());
  BOOST_CHECK(handle.get().as<stock>() == a);
  // Printed with its fields.
  auto text = caf::deep_to_string(a);
  BOOST_CHECK_MESSAGE(text.find("stock") != std::string::npos &&
                          text.find("sku-1") != std::string::npos,
                      text);
  // Bad bytes from a peer: an error naming the type, never a crash.
  auto buf = runtime::wire::pack(7, a);
  for (size_t cut = 2; cut < buf.size(); ++cut) {
    auto bad = buf;
    bad[cut] = static_cast<char>(0xc1);  // never used by msgpack
    stock out;
    auto err = runtime::wire::unpack(bad, out);
    if (!err) continue;  // a changed string byte may still decode
    BOOST_CHECK(runtime::is(err, runtime::errc::invalid_argument));
  }
  auto truncated = buf;
  truncated.resize(buf.size() - 1);
  stock out;
  BOOST_CHECK(runtime::is(runtime::wire::unpack(truncated, out),
                          runtime::errc::invalid_argument));
  // Versions: the older type reads the newer one's map and back.
  stock_v2 newer{"sku-2", 3, {}, "dock 4"};
  auto v2 = runtime::wire::pack(1, newer);
  stock older;
  BOOST_REQUIRE(!runtime::wire::unpack(v2, older));
  BOOST_CHECK(older == (stock{"sku-2", 3, {}}));
  auto v1 = runtime::wire::pack(1, older);
  stock_v2 upgraded;
  BOOST_REQUIRE(!runtime::wire::unpack(v1, upgraded));
  BOOST_CHECK_EQUAL(upgraded.origin, "unknown");
  BOOST_CHECK_EQUAL(upgraded.units, 3);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(runtime_node)

// MNEMO_ERROR_ENUM gives an enum its codes in order, their names,
// make_error/is/to_string found by argument-dependent lookup, and the
// category's registration for CAF's render and for describe.
BOOST_AUTO_TEST_CASE(an_error_enum_is_declared_with_one_line_per_code) {
  using stall::stall_errc;
  BOOST_CHECK_EQUAL(static_cast<int>(stall_errc::none), 0);
  BOOST_CHECK_EQUAL(static_cast<int>(stall_errc::sold_out), 2);
  BOOST_CHECK_EQUAL(std::string{to_string(stall_errc::closed)}, "closed");
  BOOST_CHECK_EQUAL(std::string{to_string(stall_errc::sold_out)}, "sold_out");
  BOOST_CHECK_EQUAL(std::string{to_string(static_cast<stall_errc>(7))},
                    "unknown");
  auto err = make_error(stall_errc::sold_out, "no apples left");
  BOOST_CHECK(err.category() == caf::atom("stall"));
  BOOST_CHECK(is(err, stall_errc::sold_out));
  BOOST_CHECK(!is(err, stall_errc::closed));
  BOOST_CHECK(!is(runtime::make_error(runtime::errc::entity_stopped, "x"),
                  stall_errc::sold_out));
  caf::actor_system_config cfg;
  runtime::add_error_categories(cfg);
  runtime::add_error_category<stall_errc>(cfg);
  BOOST_CHECK_EQUAL(runtime::describe(err), "stall:sold_out: no apples left");
  caf::actor_system sys{cfg};
  BOOST_CHECK_EQUAL(sys.render(err), "sold_out: no apples left");
}

BOOST_AUTO_TEST_CASE(persistence_errors_translate_with_their_message) {
  auto err = runtime::to_caf_error(persistence::error::conflict({"s", 1, 2}));
  BOOST_CHECK(runtime::is(err, persistence::errc::version_conflict));
  BOOST_CHECK(!runtime::is(err, persistence::errc::storage_full));
  auto text = runtime::describe(err);
  BOOST_CHECK_MESSAGE(text.rfind("mnemo_pers:version_conflict: version "
                                 "conflict on stream 's'",
                                 0) == 0,
                      text);
  BOOST_CHECK(!runtime::to_caf_error(persistence::error{}));
  auto rt = runtime::make_error(runtime::errc::stash_overflow, "full");
  BOOST_CHECK_EQUAL(runtime::describe(rt), "mnemo_rt:stash_overflow: full");
}

BOOST_AUTO_TEST_CASE(describe_names_codes_of_other_categories) {
  auto shop = [](uint8_t code, caf::message ctx) {
    return caf::error{code, caf::atom("shop"), std::move(ctx)};
  };
  BOOST_CHECK_EQUAL(
      runtime::describe(shop(2, caf::make_message(std::string{"sold out"}))),
      "shop:2: sold out");
  runtime::register_error_names(caf::atom("shop"),
                                {"none", "closed", "sold_out"});
  BOOST_CHECK_EQUAL(
      runtime::describe(shop(2, caf::make_message(std::string{"sold out"}))),
      "shop:sold_out: sold out");
  BOOST_CHECK_EQUAL(runtime::describe(shop(1, caf::message{})), "shop:closed");
  // Unnamed codes and structured contexts fall back.
  BOOST_CHECK_EQUAL(runtime::describe(shop(9, caf::message{})), "shop:9");
  auto structured = shop(1, caf::make_message(1, 2));
  BOOST_CHECK_EQUAL(runtime::describe(structured), caf::to_string(structured));
}

BOOST_AUTO_TEST_CASE(
    caf_errors_are_named_and_lost_connections_mean_owner_lost) {
  // CAF's own errors by name, never "system:3".
  caf::error down = caf::sec::request_receiver_down;
  BOOST_CHECK_EQUAL(runtime::describe(down), "system:request_receiver_down");
  BOOST_CHECK_EQUAL(runtime::describe(caf::error{caf::sec::unexpected_message}),
                    "system:unexpected_message");
  // Everything that says "the owner went away or cannot be reached".
  for (auto code :
       {caf::sec::request_receiver_down, caf::sec::no_route_to_receiving_node,
        caf::sec::cannot_forward_to_invalid_actor,
        caf::sec::disconnect_during_handshake, caf::sec::cannot_connect_to_node,
        caf::sec::socket_disconnected, caf::sec::end_of_stream,
        caf::sec::connection_timeout}) {
    caf::error err = code;
    BOOST_CHECK_MESSAGE(runtime::means_owner_lost(err), caf::to_string(code));
    auto lost = runtime::as_owner_lost(err, "a request to account 'a1'");
    BOOST_CHECK(runtime::is(lost, runtime::errc::owner_lost));
    auto text = runtime::describe(lost);
    BOOST_CHECK_MESSAGE(
        text.find("a request to account 'a1' lost its owner") !=
                std::string::npos &&
            text.find("system:" + caf::to_string(code)) != std::string::npos,
        text);
  }
  BOOST_CHECK(runtime::means_owner_lost(
      runtime::make_error(runtime::errc::owner_unavailable, "x")));
  // Not a loss: a slow owner, a bad message, a domain error. They pass
  // through unchanged.
  for (caf::error err :
       {caf::error{caf::sec::request_timeout},
        caf::error{caf::sec::unexpected_message},
        runtime::make_error(runtime::errc::stash_overflow, "full"),
        runtime::to_caf_error(persistence::error::conflict({"s", 1, 2}))}) {
    BOOST_CHECK_MESSAGE(!runtime::means_owner_lost(err),
                        runtime::describe(err));
    BOOST_CHECK(runtime::as_owner_lost(err, "x") == err);
  }
  BOOST_CHECK(!runtime::as_owner_lost(caf::error{}, "x"));
}

BOOST_AUTO_TEST_CASE(config_reads_options_and_rejects_bad_values) {
  runtime::node_config cfg;
  const char* argv[] = {"node", "--data-dir=/tmp/x", "--durability=nosync",
                        "--snapshot-every=50", "--stash-limit=7"};
  BOOST_REQUIRE(!cfg.parse(5, const_cast<char**>(argv)));
  BOOST_CHECK_EQUAL(cfg.data_dir, "/tmp/x");
  BOOST_CHECK_EQUAL(cfg.snapshot_every, 50u);
  BOOST_CHECK_EQUAL(cfg.stash_limit, 7u);
  auto settings = cfg.journal_settings();
  BOOST_REQUIRE(settings);
  BOOST_CHECK(settings->mode == persistence::durability::nosync);
  runtime::node_config bad;
  const char* argv2[] = {"node", "--durability=sometimes"};
  BOOST_REQUIRE(!bad.parse(2, const_cast<char**>(argv2)));
  auto err = bad.journal_settings();
  BOOST_REQUIRE(!err);
  BOOST_CHECK(runtime::is(err.error(), runtime::errc::invalid_argument));
  runtime::node_config typo;
  const char* argv3[] = {"node", "--snapshot-every=many"};
  BOOST_CHECK(typo.parse(2, const_cast<char**>(argv3)));
}

BOOST_AUTO_TEST_CASE(node_reports_journal_errors) {
  actors::temp_directory dir;
  auto file = dir.path() / "file";
  { std::ofstream{file} << "x"; }
  runtime::node_config cfg;
  cfg.data_dir = file.string();
  auto n = runtime::node::start(cfg);
  BOOST_REQUIRE(!n);
  BOOST_CHECK(runtime::is(n.error(), persistence::errc::format_mismatch));
}

BOOST_AUTO_TEST_CASE(shutdown_completes_with_actors_holding_each_other) {
  actors::temp_directory dir;
  runtime::node_config cfg;
  cfg.data_dir = (dir.path() / "data").string();
  auto n = runtime::node::start(cfg);
  BOOST_REQUIRE(n);
  auto& sys = (*n)->system();
  // Two actors that keep each other's handles: without explicit exit
  // messages the system would wait for them forever.
  auto a = sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](caf::actor&) {}};
  });
  auto b = sys.spawn([a](caf::event_based_actor* self) -> caf::behavior {
    self->send(a, caf::actor_cast<caf::actor>(self));
    return {[a](int) {}};
  });
  (*n)->track(a);
  (*n)->track(b);
  BOOST_REQUIRE((*n)->journal().append(
      "s", {persistence::new_event{{}, "t", 1, {0x80}, {}, {}, {}, {}}},
      persistence::expected_version::any()));
  n->reset();  // must return
  BOOST_CHECK(true);
}

BOOST_AUTO_TEST_SUITE_END()
