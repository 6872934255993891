// OVMS's sample custom loader, for rayvino, built with g++ against custom_loader_interface.hpp.
//
// Options (custom_loader_options; files at <base_path>/<version>/<file>):
//   model_file or xml_file  the model: .xml (IR, with bin_file) or .onnx;
//   bin_file                the IR weights;
//   enable_file             optional: a first line of exactly DISABLED blacklists the version;
//   unload_after_seconds, reload_after_seconds
//                           optional, together: a loaded version is blacklisted after being
//                           loaded that long, and lifted again after being unloaded that long.
// The blacklist is checked at every call of getModelBlacklistStatus (the server's poll), which is
// what OVMS's sample does with ENABLE_FORCE_BLACKLIST_CHECK in its loader_config_file; the
// config file is accepted and needs nothing else.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "custom_loader_interface.hpp"

using ovms::CustomLoaderInterface;
using ovms::CustomLoaderStatus;

namespace {

using Options = std::map<std::string, std::string>;
using Clock = std::chrono::steady_clock;

void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
        out += static_cast<char>(code);
    } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (code >> 18));
        out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
}

// A JSON object whose values are all strings: what the server passes as loaderOptions. Written
// here so the sample needs no JSON library; anything else is an std::invalid_argument.
class OptionsParser {
public:
    explicit OptionsParser(const std::string& text) : text_(text) {}

    Options parse() {
        Options options;
        expect('{');
        if (peek() == '}') {
            ++at_;
            return options;
        }
        while (true) {
            std::string key = string();
            expect(':');
            options[key] = string();
            char next = peek();
            ++at_;
            if (next == '}')
                return options;
            if (next != ',')
                fail("',' or '}'");
        }
    }

private:
    char peek() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\t' || text_[at_] == '\r'))
            ++at_;
        return at_ < text_.size() ? text_[at_] : '\0';
    }

    void expect(char wanted) {
        if (peek() != wanted)
            fail(std::string("'") + wanted + "'");
        ++at_;
    }

    [[noreturn]] void fail(const std::string& wanted) {
        throw std::invalid_argument("custom_loader_options: expected " + wanted + " at offset " + std::to_string(at_));
    }

    unsigned hex4() {
        if (at_ + 4 > text_.size())
            fail("four hex digits");
        unsigned code = static_cast<unsigned>(std::stoul(text_.substr(at_, 4), nullptr, 16));
        at_ += 4;
        return code;
    }

    std::string string() {
        expect('"');
        std::string out;
        while (at_ < text_.size() && text_[at_] != '"') {
            char c = text_[at_++];
            if (c != '\\') {
                out += c;
                continue;
            }
            if (at_ >= text_.size())
                fail("an escape");
            char e = text_[at_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    unsigned code = hex4();
                    if (code >= 0xD800 && code < 0xDC00 && text_.compare(at_, 2, "\\u") == 0) {
                        at_ += 2;
                        code = 0x10000 + ((code - 0xD800) << 10) + (hex4() - 0xDC00);
                    }
                    append_utf8(out, code);
                    break;
                }
                default: out += e;  // \" \\ \/
            }
        }
        expect('"');
        return out;
    }

    const std::string& text_;
    size_t at_ = 0;
};

std::string option(const Options& options, const std::string& key) {
    auto found = options.find(key);
    return found == options.end() ? std::string() : found->second;
}

bool read_file(const std::string& path, std::vector<uint8_t>& into) {
    std::ifstream file(path, std::ios::binary);
    if (!file)
        return false;
    into.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    return !file.bad();
}

bool ends_with(const std::string& text, const std::string& end) {
    return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
}

// The timed unload and reload of one version.
struct Timer {
    double unload_after = 0, reload_after = 0;
    bool loaded = false, timed_out = false;
    Clock::time_point since;

    bool blacklists(Clock::time_point now) const {
        double elapsed = std::chrono::duration<double>(now - since).count();
        if (loaded)
            return elapsed >= unload_after;
        return timed_out && elapsed < reload_after;
    }
};

struct Version {
    std::string base_path;
    Options options;
    bool has_timer = false;
    Timer timer;
};

class SampleLoader : public CustomLoaderInterface {
public:
    CustomLoaderStatus loaderInit(const std::string& loaderConfigFile) override {
        if (!loaderConfigFile.empty() && !std::ifstream(loaderConfigFile))
            std::cerr << "sampleloader: loader_config_file " << loaderConfigFile
                      << " cannot be read; the blacklist is checked at every poll anyway" << std::endl;
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus loadModel(const std::string& modelName, const std::string& basePath, const int version,
                                 const std::string& loaderOptions, std::vector<uint8_t>& modelBuffer,
                                 std::vector<uint8_t>& weights) override {
        Version& seen = versions_[{modelName, version}];
        seen.base_path = basePath;
        seen.options = OptionsParser(loaderOptions).parse();
        Timer timer;
        bool has_timer = timer_from(seen.options, timer);
        if (disabled(seen, version))
            return CustomLoaderStatus::MODEL_BLACKLISTED;
        std::string model_file = option(seen.options, "model_file");
        if (model_file.empty())
            model_file = option(seen.options, "xml_file");
        if (model_file.empty())
            return refuse(modelName, "custom_loader_options needs model_file (or xml_file)");
        CustomLoaderStatus type = CustomLoaderStatus::MODEL_TYPE_IR;
        if (ends_with(model_file, ".onnx"))
            type = CustomLoaderStatus::MODEL_TYPE_ONNX;
        else if (!ends_with(model_file, ".xml"))
            return refuse(modelName, "model_file " + model_file + " is neither .xml nor .onnx");
        if (!read_file(file(seen, version, model_file), modelBuffer))
            return refuse(modelName, "cannot read " + file(seen, version, model_file));
        if (type == CustomLoaderStatus::MODEL_TYPE_IR) {
            std::string bin_file = option(seen.options, "bin_file");
            if (bin_file.empty())
                return refuse(modelName, "custom_loader_options needs bin_file for an .xml model");
            if (!read_file(file(seen, version, bin_file), weights))
                return refuse(modelName, "cannot read " + file(seen, version, bin_file));
        }
        seen.has_timer = has_timer;
        seen.timer = timer;
        seen.timer.loaded = true;
        seen.timer.since = Clock::now();
        return type;
    }

    CustomLoaderStatus getModelBlacklistStatus(const std::string& modelName, const int version) override {
        auto found = versions_.find({modelName, version});
        if (found == versions_.end())
            return CustomLoaderStatus::OK;  // never loaded: loadModel decides
        const Version& seen = found->second;
        if (disabled(seen, version) || (seen.has_timer && seen.timer.blacklists(Clock::now())))
            return CustomLoaderStatus::MODEL_BLACKLISTED;
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus unloadModel(const std::string& modelName, const int version) override {
        auto found = versions_.find({modelName, version});
        if (found != versions_.end() && found->second.has_timer) {
            Timer& timer = found->second.timer;
            Clock::time_point now = Clock::now();
            timer.timed_out = timer.loaded && timer.blacklists(now);
            timer.loaded = false;
            timer.since = now;
        }
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus retireModel(const std::string& modelName) override {
        for (auto it = versions_.begin(); it != versions_.end();)
            it = it->first.first == modelName ? versions_.erase(it) : std::next(it);
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus loaderDeInit() override {
        versions_.clear();
        return CustomLoaderStatus::OK;
    }

private:
    static std::string file(const Version& seen, int version, const std::string& name) {
        return seen.base_path + "/" + std::to_string(version) + "/" + name;
    }

    static CustomLoaderStatus refuse(const std::string& modelName, const std::string& why) {
        std::cerr << "sampleloader: model " << modelName << ": " << why << std::endl;
        return CustomLoaderStatus::MODEL_LOAD_ERROR;
    }

    static bool disabled(const Version& seen, int version) {
        std::string enable_file = option(seen.options, "enable_file");
        if (enable_file.empty())
            return false;
        std::ifstream status(file(seen, version, enable_file));
        std::string first_line;
        return status && std::getline(status, first_line) && first_line == "DISABLED";
    }

    // The options' timer, not started; has_timer false without one. Throws on bad values.
    static bool timer_from(const Options& options, Timer& timer) {
        std::string unload = option(options, "unload_after_seconds");
        std::string reload = option(options, "reload_after_seconds");
        if (unload.empty() && reload.empty())
            return false;
        if (unload.empty() || reload.empty())
            throw std::invalid_argument("unload_after_seconds and reload_after_seconds must be given together");
        timer.unload_after = seconds("unload_after_seconds", unload);
        timer.reload_after = seconds("reload_after_seconds", reload);
        return true;
    }

    static double seconds(const std::string& key, const std::string& value) {
        size_t used = 0;
        double parsed = -1;
        try {
            parsed = std::stod(value, &used);
        } catch (const std::exception&) {
        }
        if (used != value.size() || !(parsed >= 0))
            throw std::invalid_argument(key + " must be a number of seconds >= 0, got '" + value + "'");
        return parsed;
    }

    std::map<std::pair<std::string, int>, Version> versions_;
};

}  // namespace

extern "C" CustomLoaderInterface* createCustomLoader() { return new SampleLoader(); }
