#include "mnemo/runtime/coordination/etcd_client.hpp"

#include <cstdio>
#include <mutex>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <caf/sec.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime::coordination {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

// The gateway carries bytes as base64 and 64-bit integers as strings.
std::string b64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(in.data()),
                           static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string unb64(const std::string& in) {
  if (in.empty()) return {};
  std::string out(3 * in.size() / 4 + 3, '\0');
  auto n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(in.data()),
                           static_cast<int>(in.size()));
  if (n < 0) return {};
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t pad = 0;
  for (auto i = in.rbegin(); i != in.rend() && *i == '='; ++i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

int64_t num(const json& j, const char* field) {
  auto i = j.find(field);
  if (i == j.end()) return 0;  // proto3 JSON leaves out zero values
  if (i->is_string()) return std::stoll(i->get<std::string>());
  return i->get<int64_t>();
}

etcd_kv kv_of(const json& j) {
  etcd_kv kv;
  kv.key = unb64(j.value("key", ""));
  kv.value = unb64(j.value("value", ""));
  kv.create_revision = num(j, "create_revision");
  kv.mod_revision = num(j, "mod_revision");
  kv.version = num(j, "version");
  kv.lease = num(j, "lease");
  return kv;
}

// The smallest key greater than every key that starts with `prefix`.
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = prefix.back();
    if (static_cast<unsigned char>(last) < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// A range request's fields for every key that starts with `prefix`, oldest
// first when `by_creation`.
json prefix_range(const std::string& prefix, bool by_creation) {
  json out{{"key", b64(prefix)}, {"range_end", b64(prefix_end(prefix))}};
  if (by_creation) {
    out["sort_order"] = "ASCEND";
    out["sort_target"] = "CREATE";
  }
  return out;
}

// Runs one asynchronous operation of `s` to its end. beast::tcp_stream's
// timeouts (`expires_at`) apply to asynchronous operations only, so every
// network step goes through here: an expired deadline cancels the
// operation, which then ends with `beast::error::timeout`.
template <class Start>
beast::error_code run_one(net::io_context& ioc, Start&& start) {
  beast::error_code result = net::error::would_block;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

// Connects `s` to host:port `ep` before `deadline`; returns the reason on
// failure.
std::string connect_to(net::io_context& ioc, beast::tcp_stream& s,
                       const std::string& host, const std::string& port,
                       std::chrono::steady_clock::time_point deadline) {
  beast::error_code ec;
  tcp::resolver resolver{ioc};
  auto addrs = resolver.resolve(host, port, ec);  // numeric: no lookup
  if (ec) return ec.message();
  s.expires_at(deadline);
  ec = run_one(ioc, [&](auto handler) {
    s.async_connect(addrs, [h = std::move(handler)](
                               beast::error_code e,
                               const tcp::endpoint&) mutable { h(e); });
  });
  if (ec) return ec.message();
  s.socket().set_option(tcp::no_delay{true}, ec);
  return {};
}

caf::error unavailable(const std::string& what) {
  return make_error(errc::owner_unavailable, "etcd: " + what);
}

}  // namespace

struct etcd_client::impl {
  etcd_settings settings;
  std::string endpoint;  // in use
  std::mutex mtx;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  static bool split(const std::string& ep, std::string& host,
                    std::string& port) {
    auto colon = ep.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == ep.size())
      return false;
    host = ep.substr(0, colon);
    port = ep.substr(colon + 1);
    return true;
  }

  // Opens a connection to `ep`; on failure returns the reason.
  std::string open(beast::tcp_stream& s, const std::string& ep) {
    std::string host, port;
    split(ep, host, port);
    return connect_to(ioc, s, host, port,
                      std::chrono::steady_clock::now() +
                          settings.request_timeout);
  }

  // One request and its whole answer on `s`; returns the reason on failure.
  std::string exchange(beast::tcp_stream& s, beast::flat_buffer& buf,
                       http::verb verb, const std::string& target,
                       const std::string& body, std::string& answer,
                       unsigned& status) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, endpoint);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    s.expires_after(settings.request_timeout);
    auto ec = run_one(ioc, [&](auto handler) {
      http::async_write(s, req, std::move(handler));
    });
    if (ec) return "write: " + ec.message();
    http::response<http::string_body> res;
    ec = run_one(ioc, [&](auto handler) {
      http::async_read(s, buf, res, std::move(handler));
    });
    if (ec) return "read: " + ec.message();
    status = res.result_int();
    answer = std::move(res.body());
    return {};
  }

  // Posts `body` to `target`, reconnecting (and trying the next endpoints)
  // once if the connection failed.
  caf::expected<json> call(const std::string& target, const json& body) {
    std::lock_guard<std::mutex> guard{mtx};
    std::string why;
    auto text = body.dump();
    for (size_t attempt = 0; attempt <= settings.endpoints.size(); ++attempt) {
      if (!stream) {
        auto& ep = settings.endpoints[attempt % settings.endpoints.size()];
        stream.emplace(ioc);
        buffer.clear();
        if (auto err = open(*stream, ep); !err.empty()) {
          why += (why.empty() ? "" : "; ") + ep + ": " + err;
          stream.reset();
          continue;
        }
        endpoint = ep;
      }
      std::string answer;
      unsigned status = 0;
      if (auto err = exchange(*stream, buffer, http::verb::post, target, text,
                              answer, status);
          !err.empty()) {
        why += (why.empty() ? "" : "; ") + endpoint + ": " + err;
        stream.reset();
        continue;
      }
      auto j = json::parse(answer, nullptr, false);
      if (j.is_discarded())
        return make_error(errc::invalid_argument,
                          "etcd: " + target + " answered " +
                              std::to_string(status) + " with no JSON: " +
                              answer.substr(0, 200));
      if (status != 200) {
        auto msg = j.value("message", j.value("error", answer));
        // etcd's "lease not found" is a normal answer for an expired lease.
        if (msg.find("not found") != std::string::npos)
          return make_error(errc::not_found, "etcd: " + target + ": " + msg);
        return make_error(errc::invalid_argument,
                          "etcd: " + target + " answered " +
                              std::to_string(status) + ": " + msg);
      }
      return j;
    }
    return unavailable(target + " failed on every endpoint: " + why);
  }
};

etcd_client::etcd_client(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

etcd_client::~etcd_client() = default;

caf::expected<std::unique_ptr<etcd_client>> etcd_client::connect(
    etcd_settings settings) {
  if (settings.endpoints.empty())
    return make_error(errc::invalid_argument, "etcd: no endpoints given");
  for (auto& ep : settings.endpoints) {
    std::string host, port;
    if (!impl::split(ep, host, port))
      return make_error(errc::invalid_argument,
                        "etcd: endpoint '" + ep + "' is not host:port");
  }
  auto p = std::make_unique<impl>();
  p->settings = std::move(settings);
  std::string why;
  for (auto& ep : p->settings.endpoints) {
    beast::tcp_stream s{p->ioc};
    beast::flat_buffer buf;
    std::string answer;
    unsigned status = 0;
    auto err = p->open(s, ep);
    if (err.empty()) {
      p->endpoint = ep;
      err = p->exchange(s, buf, http::verb::get, "/version", {}, answer,
                        status);
    }
    if (err.empty() && status == 200 &&
        answer.find("etcdserver") != std::string::npos) {
      return std::unique_ptr<etcd_client>{new etcd_client(std::move(p))};
    }
    if (err.empty()) err = "not etcd: " + answer.substr(0, 100);
    why += (why.empty() ? "" : "; ") + ep + ": " + err;
  }
  return unavailable("no endpoint answered: " + why);
}

const std::string& etcd_client::endpoint() const noexcept {
  return impl_->endpoint;
}

caf::expected<std::optional<etcd_kv>> etcd_client::get(const std::string& key) {
  auto res = impl_->call("/v3/kv/range", json{{"key", b64(key)}});
  if (!res) return res.error();
  auto kvs = res->find("kvs");
  if (kvs == res->end() || kvs->empty()) return std::optional<etcd_kv>{};
  return std::optional<etcd_kv>{kv_of(kvs->front())};
}

caf::expected<std::vector<etcd_kv>> etcd_client::get_prefix(
    const std::string& prefix, int64_t limit, int64_t max_create_revision) {
  auto req = prefix_range(prefix, true);
  if (limit > 0) req["limit"] = std::to_string(limit);
  if (max_create_revision > 0)
    req["max_create_revision"] = std::to_string(max_create_revision);
  auto res = impl_->call("/v3/kv/range", req);
  if (!res) return res.error();
  std::vector<etcd_kv> out;
  if (auto kvs = res->find("kvs"); kvs != res->end())
    for (auto& kv : *kvs) out.push_back(kv_of(kv));
  return out;
}

caf::expected<int64_t> etcd_client::revision(const std::string& prefix) {
  auto req = prefix_range(prefix, false);
  req["count_only"] = true;
  auto res = impl_->call("/v3/kv/range", req);
  if (!res) return res.error();
  auto rev = num(res->value("header", json::object()), "revision");
  if (rev <= 0)
    return caf::make_error(caf::sec::unexpected_response,
                           "etcd: a range answer without a revision");
  return rev;
}

caf::expected<int64_t> etcd_client::put(const std::string& key,
                                        const std::string& value,
                                        int64_t lease) {
  json req{{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0) req["lease"] = std::to_string(lease);
  auto res = impl_->call("/v3/kv/put", req);
  if (!res) return res.error();
  return num(res->value("header", json::object()), "revision");
}

etcd_compare etcd_compare::absent(std::string key) {
  return {std::move(key), field::create_revision, relation::equal, 0, {}};
}

etcd_compare etcd_compare::changed_at(std::string key, int64_t mod_revision) {
  return {std::move(key), field::mod_revision, relation::equal, mod_revision,
          {}};
}

etcd_compare etcd_compare::created_at(std::string key,
                                      int64_t create_revision) {
  return {std::move(key), field::create_revision, relation::equal,
          create_revision, {}};
}

etcd_compare etcd_compare::holds(std::string key, std::string value) {
  return {std::move(key), field::value, relation::equal, 0, std::move(value)};
}

etcd_op etcd_op::put(std::string key, std::string value, int64_t lease) {
  return {kind::put, std::move(key), std::move(value), lease};
}

etcd_op etcd_op::erase(std::string key) {
  return {kind::erase, std::move(key), {}, 0};
}

etcd_op etcd_op::erase_prefix(std::string prefix) {
  return {kind::erase_prefix, std::move(prefix), {}, 0};
}

etcd_op etcd_op::get(std::string key) {
  return {kind::get, std::move(key), {}, 0};
}

etcd_op etcd_op::get_prefix(std::string prefix) {
  return {kind::get_prefix, std::move(prefix), {}, 0};
}

namespace {

json compare_json(const etcd_compare& c) {
  static constexpr const char* relations[] = {"EQUAL", "NOT_EQUAL", "GREATER",
                                              "LESS"};
  json out{{"key", b64(c.key)},
           {"result", relations[static_cast<int>(c.is)]}};
  switch (c.target) {
    case etcd_compare::field::create_revision:
      out["target"] = "CREATE";
      out["create_revision"] = std::to_string(c.number);
      break;
    case etcd_compare::field::mod_revision:
      out["target"] = "MOD";
      out["mod_revision"] = std::to_string(c.number);
      break;
    case etcd_compare::field::version:
      out["target"] = "VERSION";
      out["version"] = std::to_string(c.number);
      break;
    case etcd_compare::field::value:
      out["target"] = "VALUE";
      out["value"] = b64(c.value);
      break;
  }
  return out;
}

json op_json(const etcd_op& op) {
  switch (op.what) {
    case etcd_op::kind::put: {
      json put{{"key", b64(op.key)}, {"value", b64(op.value)}};
      if (op.lease != 0) put["lease"] = std::to_string(op.lease);
      return json{{"request_put", put}};
    }
    case etcd_op::kind::erase:
      return json{{"request_delete_range", json{{"key", b64(op.key)}}}};
    case etcd_op::kind::erase_prefix:
      return json{{"request_delete_range", prefix_range(op.key, false)}};
    case etcd_op::kind::get:
      return json{{"request_range", json{{"key", b64(op.key)}}}};
    case etcd_op::kind::get_prefix:
      return json{{"request_range", prefix_range(op.key, true)}};
  }
  return json::object();
}

json ops_json(const std::vector<etcd_op>& ops) {
  auto out = json::array();
  for (auto& op : ops) out.push_back(op_json(op));
  return out;
}

}  // namespace

caf::expected<etcd_txn_outcome> etcd_client::txn(
    const std::vector<etcd_compare>& compare,
    const std::vector<etcd_op>& success, const std::vector<etcd_op>& failure) {
  json req{{"success", ops_json(success)}, {"failure", ops_json(failure)}};
  if (!compare.empty()) {
    req["compare"] = json::array();
    for (auto& c : compare) req["compare"].push_back(compare_json(c));
  }
  auto res = impl_->call("/v3/kv/txn", req);
  if (!res) return res.error();
  etcd_txn_outcome out;
  out.succeeded = res->value("succeeded", false);
  out.revision = num(res->value("header", json::object()), "revision");
  auto& ran = out.succeeded ? success : failure;
  out.read.resize(ran.size());
  out.deleted.resize(ran.size());
  auto responses = res->value("responses", json::array());
  if (responses.size() != ran.size())
    return caf::make_error(caf::sec::unexpected_response,
                           "etcd: a transaction of " +
                               std::to_string(ran.size()) +
                               " operations answered " +
                               std::to_string(responses.size()));
  for (size_t i = 0; i < ran.size(); ++i) {
    auto& r = responses[i];
    if (auto range = r.find("response_range"); range != r.end()) {
      if (auto kvs = range->find("kvs"); kvs != range->end())
        for (auto& kv : *kvs) out.read[i].push_back(kv_of(kv));
    } else if (auto d = r.find("response_delete_range"); d != r.end()) {
      out.deleted[i] = num(*d, "deleted");
    }
  }
  return out;
}

namespace {

// A transaction whose success branch puts `key` and reads it back and
// whose failure branch reads it: what create and replace answer.
caf::expected<etcd_txn_result> put_txn(etcd_client& c,
                                       const etcd_compare& compare,
                                       const std::string& key,
                                       const std::string& value,
                                       int64_t lease) {
  auto res = c.txn({compare},
                   {etcd_op::put(key, value, lease), etcd_op::get(key)},
                   {etcd_op::get(key)});
  if (!res) return res.error();
  etcd_txn_result out;
  out.succeeded = res->succeeded;
  out.revision = res->revision;
  for (auto& kvs : res->read)
    if (!kvs.empty()) out.kv = kvs.front();
  return out;
}

}  // namespace

caf::expected<etcd_txn_result> etcd_client::create(const std::string& key,
                                                   const std::string& value,
                                                   int64_t lease) {
  return put_txn(*this, etcd_compare::absent(key), key, value, lease);
}

caf::expected<etcd_txn_result> etcd_client::replace(const std::string& key,
                                                    const std::string& value,
                                                    int64_t mod_revision,
                                                    int64_t lease) {
  return put_txn(*this, etcd_compare::changed_at(key, mod_revision), key,
                 value, lease);
}

caf::expected<bool> etcd_client::erase(const std::string& key,
                                       int64_t create_revision) {
  std::vector<etcd_compare> compare;
  if (create_revision != 0)
    compare.push_back(etcd_compare::created_at(key, create_revision));
  auto res = txn(compare, {etcd_op::erase(key)});
  if (!res) return res.error();
  return res->succeeded && res->deleted.front() > 0;
}

caf::expected<etcd_lease> etcd_client::grant(std::chrono::seconds ttl) {
  auto res = impl_->call("/v3/lease/grant",
                         json{{"TTL", std::to_string(ttl.count())}});
  if (!res) return res.error();
  if (!res->value("error", std::string{}).empty())
    return make_error(errc::invalid_argument,
                      "etcd: lease grant: " + (*res)["error"].get<std::string>());
  return etcd_lease{num(*res, "ID"), std::chrono::seconds{num(*res, "TTL")}};
}

caf::expected<std::chrono::seconds> etcd_client::keep_alive(int64_t lease) {
  // One request per keepalive: the gateway answers several keepalives sent
  // in one streamed request late (docs/coordination.md).
  auto res = impl_->call("/v3/lease/keepalive",
                         json{{"ID", std::to_string(lease)}});
  if (!res) return res.error();
  auto result = res->value("result", json::object());
  auto ttl = num(result, "TTL");
  if (ttl <= 0)
    return make_error(errc::not_found, "etcd: lease " + std::to_string(lease) +
                                           " has expired or was revoked");
  return std::chrono::seconds{ttl};
}

caf::error etcd_client::revoke(int64_t lease) {
  auto res =
      impl_->call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}});
  return res ? caf::error{} : res.error();
}

caf::expected<bool> etcd_client::wait_deleted(
    const std::string& key, int64_t after, std::chrono::milliseconds timeout) {
  // A watch streams newline-separated JSON messages on its own connection.
  auto& c = *impl_;
  std::string ep;
  {
    std::lock_guard<std::mutex> guard{c.mtx};
    ep = c.endpoint;
  }
  net::io_context ioc;
  beast::tcp_stream s{ioc};
  {
    std::string host, port;
    impl::split(ep, host, port);
    auto err = connect_to(
        ioc, s, host, port,
        std::chrono::steady_clock::now() + c.settings.request_timeout);
    if (!err.empty()) return unavailable("watch " + ep + ": " + err);
  }
  json create{{"key", b64(key)}, {"start_revision", std::to_string(after + 1)},
              {"filters", json::array({"NOPUT"})}};
  http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
  req.set(http::field::host, ep);
  req.set(http::field::content_type, "application/json");
  req.body() = json{{"create_request", create}}.dump();
  req.prepare_payload();
  s.expires_after(c.settings.request_timeout);
  auto ec = run_one(
      ioc, [&](auto handler) { http::async_write(s, req, std::move(handler)); });
  if (ec) return unavailable("watch " + ep + ": " + ec.message());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  s.expires_at(deadline);
  ec = run_one(ioc, [&](auto handler) {
    http::async_read_header(s, buf, parser, std::move(handler));
  });
  if (ec == beast::error::timeout) return false;
  if (ec) return unavailable("watch " + ep + ": " + ec.message());
  std::string pending;
  char chunk[4096];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    // Returns with what has arrived: watch messages are small.
    ec = run_one(ioc, [&](auto handler) {
      http::async_read_some(s, buf, parser, std::move(handler));
    });
    if (ec == http::error::need_buffer) ec = {};
    if (ec == beast::error::timeout) return false;
    if (ec) return unavailable("watch " + ep + ": " + ec.message());
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    for (auto nl = pending.find('\n'); nl != std::string::npos;
         nl = pending.find('\n')) {
      auto line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      auto j = json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      auto result = j.value("result", json::object());
      if (result.value("canceled", false) || result.contains("compact_revision"))
        // Compacted past `after`: the key's history is gone; report it as
        // deleted so that the caller reads the current state again.
        return true;
      for (auto& ev : result.value("events", json::array()))
        if (ev.value("type", "") == "DELETE") return true;
    }
  }
  return false;
}

// -- election ------------------------------------------------------------------

caf::expected<etcd_leadership> campaign(etcd_client& client,
                                        const std::string& prefix,
                                        int64_t lease, const std::string& value,
                                        std::chrono::milliseconds timeout) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(lease));
  etcd_leadership term{prefix + "/" + hex, 0, lease};
  auto created = client.create(term.key, value, lease);
  if (!created) return created.error();
  if (!created->succeeded && created->kv.lease != lease)
    return make_error(errc::invalid_argument,
                      "etcd: " + term.key + " belongs to another lease");
  term.epoch = created->kv.create_revision;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // The candidate created just before this one, if any.
    auto before =
        client.get_prefix(prefix + "/", 0, term.epoch - 1);
    if (!before) return before.error();
    if (before->empty()) return term;
    auto& prev = before->back();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return caf::make_error(caf::sec::request_timeout,
                             "etcd: still waiting for " + prev.key +
                                 " to step down as leader of " + prefix);
    auto gone = client.wait_deleted(prev.key, prev.mod_revision, left);
    if (!gone) return gone.error();
  }
}

caf::expected<std::optional<etcd_kv>> leader(etcd_client& client,
                                             const std::string& prefix) {
  auto first = client.get_prefix(prefix + "/", 1);
  if (!first) return first.error();
  if (first->empty()) return std::optional<etcd_kv>{};
  return std::optional<etcd_kv>{first->front()};
}

caf::error resign(etcd_client& client, const etcd_leadership& term) {
  auto gone = client.erase(term.key, term.epoch);
  return gone ? caf::error{} : gone.error();
}

}  // namespace mnemo::runtime::coordination
