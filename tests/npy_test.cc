#include <xjob/detail/npy.hpp>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

namespace {

std::span<std::byte const> bytes_of(std::string const& s) {
  return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
}

std::string v1_header(std::string const& dict) {
  std::string h("\x93NUMPY\x01\x00", 8);
  h.push_back(static_cast<char>(dict.size() & 0xff));
  h.push_back(static_cast<char>(dict.size() >> 8));
  return h + dict;
}

}  // namespace

TEST_CASE("headers are what NumPy writes, padded to 64 bytes") {
  std::array<std::size_t, 2> const shape{3, 4};
  std::string const header = xjob::detail::npy_header("<f8", shape);
  REQUIRE(header.size() % 64 == 0);
  REQUIRE(header.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  REQUIRE(header.find("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }") == 10);
  REQUIRE(header.back() == '\n');
  std::size_t const dict_bytes = static_cast<unsigned char>(header[8]) | (static_cast<unsigned char>(header[9]) << 8);
  REQUIRE(dict_bytes + 10 == header.size());
}

TEST_CASE("rank-1 and rank-0 shapes use Python's tuple syntax") {
  std::array<std::size_t, 1> const one{5};
  REQUIRE(xjob::detail::npy_header("<i4", one).find("'shape': (5,)") != std::string::npos);
  REQUIRE(xjob::detail::npy_header("<i4", std::span<std::size_t const>{}).find("'shape': ()") != std::string::npos);
}

TEST_CASE("a written header parses back") {
  std::array<std::size_t, 3> const shape{2, 0, 7};
  std::string const header = xjob::detail::npy_header("<c16", shape);
  auto const info = xjob::detail::parse_npy_header("x.npy", bytes_of(header));
  REQUIRE(info.descr == "<c16");
  REQUIRE_FALSE(info.fortran_order);
  REQUIRE(info.shape == std::vector<std::size_t>{2, 0, 7});
  REQUIRE(info.data_offset == header.size());
}

TEST_CASE("headers from other writers parse: key order, double quotes, native order, Python 2 longs") {
  auto const info = xjob::detail::parse_npy_header(
      "x.npy", bytes_of(v1_header("{\"shape\": (3L, 2L), \"fortran_order\": True, \"descr\": \"=f4\"}\n")));
  REQUIRE(info.descr == "<f4");
  REQUIRE(info.fortran_order);
  REQUIRE(info.shape == std::vector<std::size_t>{3, 2});
}

TEST_CASE("version 2 headers with 4-byte lengths parse") {
  std::string const dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (9,), }\n";
  std::string h("\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((dict.size() >> (8 * i)) & 0xff));
  auto const info = xjob::detail::parse_npy_header("x.npy", bytes_of(h + dict));
  REQUIRE(info.descr == "|u1");
  REQUIRE(info.data_offset == 12 + dict.size());
}

TEST_CASE("malformed headers are npy_errors naming the file and the problem") {
  using xjob::npy_error;
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::detail::parse_npy_header("bad.npy", bytes_of("not numpy at all")), npy_error,
                                "bad.npy: not a .npy file");
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      xjob::detail::parse_npy_header("v9.npy", bytes_of(std::string("\x93NUMPY\x09\x00\x00\x00", 10))), npy_error,
      "unsupported .npy format version 9.0");
  std::string truncated = v1_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n");
  truncated.resize(30);
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::detail::parse_npy_header("t.npy", bytes_of(truncated)), npy_error, "truncated");
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      xjob::detail::parse_npy_header("m.npy", bytes_of(v1_header("{'descr': '<f8', 'shape': (3,)}\n"))), npy_error,
      "are all required");
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      xjob::detail::parse_npy_header("s.npy",
                                     bytes_of(v1_header("{'descr': [('a', '<f8')], 'fortran_order': False, "
                                                        "'shape': (3,)}\n"))),
      npy_error, "structured dtypes are not supported");
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      xjob::detail::parse_npy_header(
          "n.npy", bytes_of(v1_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-3,)}\n"))),
      npy_error, "non-negative");
}

TEST_CASE("layout checks name dtype, order and truncation") {
  xjob::detail::npy_header_info info{"<i4", false, {4, 4}, 64};
  REQUIRE_NOTHROW(xjob::detail::check_npy_layout("a.npy", info, "<i4", 4, 64 + 64));
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::detail::check_npy_layout("a.npy", info, "<f8", 8, 1000), xjob::npy_error,
                                "dtype '<i4' does not match the array's element type ('<f8')");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::detail::check_npy_layout("a.npy", info, "<i4", 4, 100), xjob::npy_error,
                                "the file is truncated");
  info.fortran_order = true;
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::detail::check_npy_layout("a.npy", info, "<i4", 4, 128), xjob::npy_error,
                                "Fortran-ordered");
}

TEST_CASE("dtype strings match NumPy's for every supported element type") {
  using xjob::detail::npy_descr;
  REQUIRE(npy_descr<double>() == "<f8");
  REQUIRE(npy_descr<float>() == "<f4");
  REQUIRE(npy_descr<std::int32_t>() == "<i4");
  REQUIRE(npy_descr<std::uint8_t>() == "|u1");
  REQUIRE(npy_descr<bool>() == "|b1");
  REQUIRE(npy_descr<std::complex<double>>() == "<c16");
  REQUIRE(npy_descr<long long>() == "<i8");
  REQUIRE_FALSE(xjob::detail::has_npy_descr_v<std::string>);
}
