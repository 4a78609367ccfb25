"""The page's CSS: the header, the run row, and the results table (maps at least 224 px wide,
labels outside them, scrolling sideways rather than wrapping; the class names stay in view
while scrolling on wide screens, and scroll with their row on phones, where a fixed column
would cover the maps); the view tabs' labels on phones."""

TILE_PX = 224  # the width of a map on the page (the models' input size)

CSS = f"""
#header {{display: flex; justify-content: space-between; align-items: flex-end; gap: 1rem;
         padding: 0.25rem 0 0.5rem 0; border-bottom: 1px solid var(--border-color-primary);}}
#header h1 {{margin: 0; font-size: 1.5rem; font-weight: 700;}}
#header p {{margin: 0.2rem 0 0 0; color: var(--body-text-color-subdued);}}
#device-badge {{white-space: nowrap; font-size: 0.85rem; padding: 0.25rem 0.7rem;
               border-radius: 999px; background: var(--background-fill-secondary);
               border: 1px solid var(--border-color-primary);}}
#status {{min-height: 1.5rem;}}
#run {{font-size: 1.05rem;}}
#estimate, #model-note {{font-size: 0.85rem;}}
#legend {{display: flex; align-items: center; gap: 0.5rem; font-size: 0.8rem;
         color: var(--body-text-color-subdued);}}
#legend img {{height: 12px; flex: 1; min-width: 60px; border-radius: 3px;}}
#results-column {{min-width: 0 !important;}}
#results {{max-width: 100%; overflow: hidden;}}
#results .results-scroll {{overflow-x: auto; max-width: 100%; padding-bottom: 4px;}}
#results .results-table a {{display: block; line-height: 0;}}
#results .results-table {{border-collapse: separate; border-spacing: 6px 4px;
                         table-layout: fixed; width: max-content; border: none; margin: 0;}}
#results .results-table th {{font-weight: 600; font-size: 0.85rem; vertical-align: bottom;
                            padding: 0 2px; border: none; background: none;}}
#results .results-table th.method {{width: {TILE_PX}px; text-align: center;}}
#results .results-table th.corner {{width: 7.5rem; text-align: left;
                                   color: var(--body-text-color-subdued);}}
#results .results-table th.row {{width: 7.5rem; text-align: left; vertical-align: middle;
                                position: sticky; left: 0; z-index: 1;
                                background: var(--background-fill-primary);}}
#results .results-table td {{padding: 0; border: none; vertical-align: top; background: none;}}
#results .class-name {{display: block; font-size: 0.95rem;}}
#results .class-index, #results .chance {{display: block; font-weight: 400; font-size: 0.78rem;
                                         color: var(--body-text-color-subdued);}}
#results .why-not {{display: block; font-weight: 600; font-size: 0.75rem; color: var(--color-red-500, #c00);}}
#results img.tile {{width: {TILE_PX}px; height: {TILE_PX}px; max-width: none; display: block;
                   margin: 0;
                   border-radius: 4px; object-fit: contain;}}
#results .time {{font-size: 0.72rem; line-height: 1.2; text-align: center;
                color: var(--body-text-color-subdued); margin-top: 2px; max-width: {TILE_PX}px;}}
#results .results-notes {{margin: 0 0 0.5rem 0; padding: 0.4rem 0.8rem 0.4rem 1.6rem;
                         border-radius: 6px; font-size: 0.85rem;
                         background: var(--background-fill-secondary);}}
#results tr.contrast .class-name {{font-style: italic;}}
#results .results-empty {{padding: 2rem 1rem; color: var(--body-text-color-subdued);}}
#faithfulness-table table {{table-layout: auto;}}
@media (max-width: 640px) {{
  #results .results-table th.row {{position: static; width: 5.5rem;}}
  #results .results-table th.corner {{width: 5.5rem;}}
  #header {{flex-direction: column; align-items: flex-start; gap: 0.3rem;}}
  #header h1 {{font-size: 1.25rem;}}
  /* the two tab bars each fit on one line at 390 px (and wrap rather than hide tabs behind "…") */
  #views > .tab-wrapper button[role=tab], #image-tabs > .tab-wrapper button[role=tab] {{
    padding-left: 0.5rem; padding-right: 0.5rem; font-size: 0.85rem;}}
}}
"""
