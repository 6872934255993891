/* Built-in model_zoo_intel_object_detection, OVMS's contract: image FP32 [1,3,H,W] (or NHWC) plus
 * detection FP32 [1,1,N,7] rows [image_id, label, confidence, xmin, ymin, xmax, ymax] (normalised)
 * -> images [B,1,C,th,tw] (or [B,1,th,tw,C]) crops resized bilinearly, coordinates [B,1,4] FP32
 * (normalised box), confidences [B,1,1] FP32, label_ids [B,1,1] I32. Rows stop at the first
 * image_id -1; kept rows have image_id 0, confidence >= confidence_threshold and, if set,
 * label == filter_label_id; at most max_output_batch (100) of them. */
#define NODE_NAME "model_zoo_intel_object_detection"
#include "common.h"

STATELESS_NODE

struct settings {
    int width, height, orig_width, orig_height, nchw_in, nchw_out, gray, max_batch, label;
    float threshold;
};

static int read_settings(struct settings* s, const struct CustomNodeParam* params, int count, int for_execute) {
    s->width = get_int_param(params, count, "target_image_width", -1);
    s->height = get_int_param(params, count, "target_image_height", -1);
    NODE_ASSERT(s->width > 0 && s->height > 0, "target_image_width and target_image_height are required and must be larger than 0");
    s->orig_width = get_int_param(params, count, "original_image_width", 0);
    s->orig_height = get_int_param(params, count, "original_image_height", 0);
    s->nchw_in = is_nchw(get_string_param(params, count, "original_image_layout", "NCHW"));
    s->nchw_out = is_nchw(get_string_param(params, count, "target_image_layout", "NCHW"));
    NODE_ASSERT(s->nchw_in >= 0 && s->nchw_out >= 0, "image layouts must be NCHW or NHWC");
    s->gray = strcmp(get_string_param(params, count, "convert_to_gray_scale", "false"), "true") == 0;
    s->max_batch = get_int_param(params, count, "max_output_batch", 100);
    NODE_ASSERT(s->max_batch > 0, "max_output_batch must be larger than 0");
    s->label = get_int_param(params, count, "filter_label_id", -1);
    s->threshold = get_float_param(params, count, "confidence_threshold", -1);
    NODE_ASSERT(!for_execute || (s->threshold >= 0 && s->threshold <= 1), "confidence_threshold is required, in the range 0-1");
    return 0;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct settings s;
    if (read_settings(&s, params, paramsCount, 1)) return 1;
    const struct CustomNodeTensor* image = find_input(inputs, inputsCount, "image");
    const struct CustomNodeTensor* detection = find_input(inputs, inputsCount, "detection");
    NODE_ASSERT(inputsCount == 2 && image && detection, "expected inputs image and detection");
    NODE_ASSERT(image->precision == FP32 && detection->precision == FP32, "image and detection must be FP32");
    NODE_ASSERT(image->dimsCount == 4 && image->dims[0] == 1 && image->dims[s.nchw_in ? 1 : 3] == 3, "image must be [1,3,H,W] (NCHW) or [1,H,W,3] (NHWC)");
    NODE_ASSERT(detection->dimsCount == 4 && detection->dims[0] == 1 && detection->dims[1] == 1 && detection->dims[3] == 7, "detection must be [1,1,N,7]");
    int h = (int)image->dims[s.nchw_in ? 2 : 1], w = (int)image->dims[s.nchw_in ? 3 : 2];
    NODE_ASSERT(h > 0 && w > 0, "image size must be positive");
    NODE_ASSERT((!s.orig_width || s.orig_width == w) && (!s.orig_height || s.orig_height == h), "image size differs from original_image_width/height");

    float* hwc = (float*)malloc((size_t)h * w * 3 * sizeof(float));
    if (s.nchw_in) chw_to_hwc((const float*)image->data, hwc, 3, h, w);
    else memcpy(hwc, image->data, (size_t)h * w * 3 * sizeof(float));

    int rows = (int)detection->dims[2], kept = 0, c = s.gray ? 1 : 3, pixels = s.width * s.height;
    int* keep = (int*)malloc((rows ? rows : 1) * sizeof(int));
    const float* det = (const float*)detection->data;
    for (int i = 0; i < rows && kept < s.max_batch; i++) {
        const float* r = det + i * 7;
        if ((int)r[0] == -1) break;
        if ((int)r[0] != 0 || r[2] < s.threshold || (s.label != -1 && (int)r[1] != s.label)) continue;
        keep[kept++] = i;
    }

    uint64_t b = kept, dims_images_nchw[] = {b, 1, c, s.height, s.width}, dims_images_nhwc[] = {b, 1, s.height, s.width, c};
    uint64_t dims_coords[] = {b, 1, 4}, dims_one[] = {b, 1, 1};
    *outputsCount = 4;
    *outputs = (struct CustomNodeTensor*)calloc(4, sizeof(struct CustomNodeTensor));
    float* images = (float*)set_output(&(*outputs)[0], "images", FP32, sizeof(float), 5, s.nchw_out ? dims_images_nchw : dims_images_nhwc);
    float* coords = (float*)set_output(&(*outputs)[1], "coordinates", FP32, sizeof(float), 3, dims_coords);
    float* confidences = (float*)set_output(&(*outputs)[2], "confidences", FP32, sizeof(float), 3, dims_one);
    int32_t* labels = (int32_t*)set_output(&(*outputs)[3], "label_ids", I32, sizeof(int32_t), 3, dims_one);

    float* crop = (float*)malloc((size_t)pixels * 3 * sizeof(float));
    float* gray = (float*)malloc((size_t)pixels * sizeof(float));
    for (int j = 0; j < kept; j++) {
        const float* r = det + keep[j] * 7;
        int x0 = clampi((int)(r[3] * w), 0, w - 1), y0 = clampi((int)(r[4] * h), 0, h - 1);
        int x1 = clampi((int)(r[5] * w), x0 + 1, w), y1 = clampi((int)(r[6] * h), y0 + 1, h);
        resize_roi(hwc, w, 3, x0, y0, x1 - x0, y1 - y0, crop, s.width, s.height);
        const float* pixelsOut = crop;
        if (s.gray) {
            bgr_to_gray(crop, gray, pixels, 0);
            pixelsOut = gray;
        }
        float* dst = images + (size_t)j * pixels * c;
        if (s.nchw_out) hwc_to_chw(pixelsOut, dst, c, s.height, s.width);
        else memcpy(dst, pixelsOut, (size_t)pixels * c * sizeof(float));
        memcpy(coords + j * 4, r + 3, 4 * sizeof(float));
        confidences[j] = r[2];
        labels[j] = (int32_t)r[1];
    }
    free(crop);
    free(gray);
    free(keep);
    free(hwc);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct settings s;
    if (read_settings(&s, params, paramsCount, 0)) return 1;
    uint64_t h = s.orig_height, w = s.orig_width; /* 0 (dynamic) unless given */
    uint64_t image_nchw[] = {1, 3, h, w}, image_nhwc[] = {1, h, w, 3}, detection[] = {1, 1, 0, 7};
    *infoCount = 2;
    *info = new_infos(2);
    set_info(&(*info)[0], "image", FP32, 4, s.nchw_in ? image_nchw : image_nhwc);
    set_info(&(*info)[1], "detection", FP32, 4, detection);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct settings s;
    if (read_settings(&s, params, paramsCount, 0)) return 1;
    uint64_t c = s.gray ? 1 : 3, images_nchw[] = {0, 1, c, s.height, s.width}, images_nhwc[] = {0, 1, s.height, s.width, c};
    uint64_t coords[] = {0, 1, 4}, one[] = {0, 1, 1};
    *infoCount = 4;
    *info = new_infos(4);
    set_info(&(*info)[0], "images", FP32, 5, s.nchw_out ? images_nchw : images_nhwc);
    set_info(&(*info)[1], "coordinates", FP32, 3, coords);
    set_info(&(*info)[2], "confidences", FP32, 3, one);
    set_info(&(*info)[3], "label_ids", I32, 3, one);
    return 0;
}
